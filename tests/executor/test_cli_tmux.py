"""`ccx` in a real terminal: tmux panes driven with send-keys and read with capture-pane
(tests/tmux_testing.py)."""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from ccx_testing import Served, run_daemon
from tmux_testing import BOUND, CCX, SHELL_ENV, TMUX, Pane, exit_status, open_pane

from cc_executor.executor.client import open_connection

pytestmark = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (apt-get install -y tmux)"
)


def prompt_is_back(screen: str) -> bool:
    """The shell shows its prompt ("$ ") again: the command in the foreground has ended."""
    return screen.rstrip().endswith("\n$") and "interrupting run" in screen


@pytest.fixture
async def pane(tmp_path: Path) -> AsyncIterator[Pane]:
    async with open_pane(tmp_path) as pane:
        yield pane


async def test_ctrl_c_sends_sigint_to_the_command(served: Served, pane: Pane) -> None:
    script = "trap 'echo got SIGINT; exit 7' INT; echo started; while :; do sleep 0.1; done"
    pane.type(f"{CCX} run --url {served.url} -- sh -c {shlex.quote(script)}; echo EXIT=$?")
    await pane.wait_for(lambda s: "started" in s.splitlines())  # the output, not the command
    pane.keys("C-c")
    screen = await pane.wait_for(lambda s: exit_status(s) is not None)
    assert "got SIGINT" in screen.splitlines()  # the command's own handler ran...
    assert exit_status(screen) == 7  # ...and its exit status is ccx's, as locally


async def test_second_ctrl_c_kills_at_once_and_exits_130(served: Served, pane: Pane) -> None:
    script = "trap '' INT; echo started; sleep 30"  # deaf to SIGINT, its sleep too
    pane.type(f"{CCX} run --url {served.url} -- sh -c {shlex.quote(script)}; echo EXIT=$?")
    await pane.wait_for(lambda s: "started" in s.splitlines())
    pane.keys("C-c")
    await pane.wait_for(lambda s: "Ctrl-C again kills it" in s)
    pane.keys("C-c")
    screen = await pane.wait_for(lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 130
    assert re.search(r"^ccx: run [0-9a-f]+ killed$", screen, re.MULTILINE), screen


async def test_ctrl_c_on_attach_detaches_and_the_run_goes_on(served: Served, pane: Pane) -> None:
    async with open_connection(served.url) as conn:
        run = await conn.execute(
            ["sh", "-c", "while :; do echo tick; sleep 0.2; done"], durable=True
        )
        await run.detach()
        pane.type(f"{CCX} attach --url {served.url} {run.id}; echo EXIT=$?")
        await pane.wait_for(lambda s: s.splitlines().count("tick") >= 2)
        pane.keys("C-c")
        screen = await pane.wait_for(lambda s: exit_status(s) is not None)
        assert exit_status(screen) == 130
        assert f"ccx: stopped following run {run.id}; it goes on" in screen
        assert (await conn.run_status(run.id)).state == "running"
        await conn.call("control", {"run": run.id, "type": "CANCEL"})


async def test_a_timeout_is_explained(served: Served, pane: Pane) -> None:
    pane.type(f"{CCX} run --url {served.url} --timeout 1 -- sleep 30; echo EXIT=$?")
    screen = await pane.wait_for(lambda s: exit_status(s) is not None)
    assert re.search(r"^ccx: run [0-9a-f]+ timed out after 1 s; SIGTERM ended it$", screen, re.M)
    assert exit_status(screen) == 128 + 15


async def test_a_daemon_drain_is_explained(pane: Pane) -> None:
    async with run_daemon("--shutdown-grace", "1") as daemon:
        pane.type(f"{CCX} run --url {daemon.url} -- sh -c 'echo started; sleep 30'; echo EXIT=$?")
        await pane.wait_for(lambda s: "started" in s.splitlines())
        daemon.process.terminate()
        screen = await pane.wait_for(lambda s: exit_status(s) is not None)
    drained = r"^ccx: the daemon is shutting down: run [0-9a-f]+ has 1 s to finish, then it is"
    assert re.search(drained, screen, re.MULTILINE), screen
    assert re.search(r"^ccx: run [0-9a-f]+ was cancelled: the daemon shut down", screen, re.M)


async def tick_then_suspend(pane: Pane, url: str) -> str:
    """`ccx run` a command that counts, let it count, Ctrl-Z; the screen with ccx's hint."""
    script = "i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.2; done"
    pane.type(f"{CCX} run --url {url} -- sh -c '{script}'")
    await pane.wait_for(lambda s: "tick2" in s.splitlines())
    pane.keys("C-z")
    return await pane.wait_for(lambda s: "paused; `fg` resumes it (or: ccx " in s)


async def test_the_ctrl_z_hint_works_from_a_second_shell(served: Served, pane: Pane) -> None:
    screen = await tick_then_suspend(pane, served.url)
    hint = re.search(r"\(or: (ccx [^)]*)\)", screen)
    assert hint is not None, screen
    with trio.fail_after(BOUND):
        done = await trio.run_process(
            ["sh", "-c", hint.group(1)],  # as printed, from another shell
            env={**os.environ, **SHELL_ENV},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().endswith(" resumed\n")
    pane.type("fg")
    last = int(re.findall(r"^tick(\d+)$", pane.screen(), re.MULTILINE)[-1])
    await pane.wait_for(lambda s: f"tick{last + 2}" in s.splitlines())
    pane.keys("C-c")
    await pane.wait_for(prompt_is_back)


async def test_status_line_on_stderr_never_in_stdout(
    served: Served, pane: Pane, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    pane.type(f"{CCX} run --url {served.url} -- sh -c 'echo begin; sleep 30' > {out}")
    pattern = re.compile(r"ccx: run [0-9a-f]+ running \d+\.\ds \d+ B seq \d+")
    await pane.wait_for(lambda s: pattern.search(s) is not None)
    pane.keys("C-c")
    await pane.wait_for(prompt_is_back)
    assert out.read_bytes() == b"begin\n"  # the status line went to the terminal only


async def test_status_line_is_erased_and_output_stays_whole(served: Served, pane: Pane) -> None:
    script = "echo first; sleep 1; echo second; sleep 30"
    pane.type(f"{CCX} run --url {served.url} -- sh -c '{script}'")
    await pane.wait_for(lambda s: "second" in s.splitlines() and "running" in s)
    pane.keys("C-c")
    screen = await pane.wait_for(prompt_is_back)
    lines = screen.splitlines()
    assert "first" in lines, screen
    assert "second" in lines, screen  # never overwritten by, nor glued to, the status line
    assert not any("running" in line for line in lines), screen  # erased before our messages


async def test_ctrl_z_pauses_and_fg_resumes(served: Served, pane: Pane) -> None:
    screen = await tick_then_suspend(pane, served.url)
    ticks = re.findall(r"^tick(\d+)$", screen, re.MULTILINE)
    pane.type("fg")
    last = int(ticks[-1])
    await pane.wait_for(lambda s: f"tick{last + 2}" in s.splitlines())
    pane.keys("C-c")
    await pane.wait_for(prompt_is_back)


async def test_a_terminals_stdin_reaches_the_command(served: Served, pane: Pane) -> None:
    program = "name = input('name? '); print(f'hello {name}')"
    command = shlex.join([sys.executable, "-c", program])
    pane.type(f"{CCX} run --url {served.url} -- {command}; echo EXIT=$?")
    # The prompt as the command wrote it (the typed command line holds it too, on its own).
    await pane.wait_for(lambda s: "name?" in [line.rstrip() for line in s.splitlines()])
    pane.type("world")
    screen = await pane.wait_for(lambda s: exit_status(s) is not None)
    assert "name? world" in screen.splitlines()  # typed after the prompt, echoed by the tty
    assert "hello world" in screen.splitlines()
    assert exit_status(screen) == 0


async def test_the_daemon_at_a_terminal_speaks_in_words(pane: Pane, tmp_path: Path) -> None:
    pane.type(f"{CCX} serve --port 0 --state-dir {tmp_path / 'state'}; echo EXIT=$?")
    listening = re.compile(r"^\d\d:\d\d:\d\d listening on ws://127\.0\.0\.1:\d+/ ", re.M)
    await pane.wait_for(lambda s: listening.search(s) is not None)
    pane.keys("C-c")
    screen = await pane.wait_for(lambda s: exit_status(s) is not None)
    assert "draining: no new runs; 0 live run(s) may finish for 10.0 s" in screen
    assert re.search(r"^\d\d:\d\d:\d\d stopped$", screen, re.MULTILINE), screen
    assert "{" not in screen  # no JSON
    assert exit_status(screen) == 0


async def test_the_daemon_at_a_terminal_says_what_to_do_about_its_state_directory(
    pane: Pane, tmp_path: Path
) -> None:
    # A file given as --state-dir: the daemon serves without durable runs, and said so as
    # `error: durable.state_unreadable  [directory=..., error="[Errno 20] Not a directory:
    # '...'"]`, neither what it means nor what to do.
    state = tmp_path / "state"
    state.write_text("not a directory")
    pane.type(f"{CCX} serve --port 0 --state-dir {state}; echo EXIT=$?")
    said = (
        f"error: cannot use {state}/journals: it cannot be listed (Not a directory): durable "
        "runs cannot start — fix it, or choose another --state-dir (CCX_STATE_DIR)"
    )
    screen = await pane.wait_for(lambda s: said in s or "state_unreadable" in s)
    assert said in screen, screen
    pane.keys("C-c")
    assert exit_status(await pane.wait_for(lambda s: exit_status(s) is not None)) == 0
