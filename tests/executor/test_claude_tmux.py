"""`ccx claude` in a real terminal (tmux), against the real CLI and the fake Messages API: type
a message, approve a tool, Ctrl-C a streaming turn, Ctrl-D; and a second terminal attached to
a durable session."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from ccx_testing import run_daemon, start_daemon
from claude_fake_api import PLAIN_TEXT
from claude_world import ClaudeWorld, assert_nothing_left, daemon_env
from tmux_testing import CCX, TMUX, Pane, exit_status, open_pane

from cc_executor.executor.client import open_connection

pytestmark = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (apt-get install -y tmux)"
)
# A CLI turn against the fake API takes about a second; a screen is given this long.
SCREEN_BOUND = 60
SESSION = re.compile(r"^ccx: Claude session ([\w-]+)", re.MULTILINE)


def lines(screen: str) -> list[str]:
    return [line.rstrip() for line in screen.splitlines()]


def prompt_shown(screen: str) -> bool:
    """The last line is ccx's prompt (tmux drops its trailing space)."""
    return lines(screen.rstrip())[-1:] == [">"]


async def wait(pane: Pane, found: Callable[[str], bool]) -> str:
    return await pane.wait_for(found, SCREEN_BOUND)


async def start_session(pane: Pane, url: str, world: ClaudeWorld, *options: str) -> str:
    """Type `ccx claude` (its exit status echoed after it) and wait for its prompt; the run."""
    pane.type(
        " ".join([f"{CCX} claude --url {url} --cwd {world.work}", *options]) + "; echo EXIT=$?"
    )
    screen = await wait(pane, prompt_shown)
    found = SESSION.search(screen)
    assert found is not None, screen
    return found.group(1)


async def test_type_approve_interrupt_and_close(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, world.config())
    made = world.work / "made.txt"
    async with open_pane(tmp_path) as pane:
        run = await start_session(pane, served.url, world)

        pane.type("hello")
        screen = await wait(pane, lambda s: "ccx: turn 1 done" in s and prompt_shown(s))
        assert PLAIN_TEXT in lines(screen), screen  # the answer, on a line of its own

        pane.type(f"please [tool:touch {made}]")
        screen = await wait(pane, lambda s: "allow? [y/n]" in s)
        assert f"ccx: Claude wants to use Bash: touch {made}" in screen
        pane.type("y")
        await wait(pane, lambda s: "ccx: turn 2 done" in s and prompt_shown(s))
        assert made.exists()

        pane.type("[slow:300]")
        await wait(pane, lambda s: "chunk 3" in s)  # streaming, as it is written
        pane.keys("C-c")
        screen = await wait(pane, lambda s: "ccx: turn 3 interrupted" in s and prompt_shown(s))
        assert "ccx: interrupting turn 3" in screen

        pane.type("still there?")  # the same process takes the next turn
        await wait(pane, lambda s: "ccx: turn 4 done" in s and prompt_shown(s))

        pane.keys("C-c")  # at the prompt: a new prompt, the session untouched
        await wait(pane, lambda s: [x[:1] for x in lines(s.rstrip())[-2:]] == [">", ">"])

        pane.keys("C-d")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    assert re.search(rf"^ccx: session {run} closed \(4 turn\(s\), \$[0-9.]+\)$", screen, re.M)
    assert_nothing_left(run)


async def test_a_second_terminal_attaches_is_asked_what_is_pending_and_answers(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, world.config())
    denied, made = world.work / "denied.txt", world.work / "from-b.txt"
    async with open_pane(tmp_path) as a, open_pane(tmp_path) as b:
        run = await start_session(a, served.url, world, "--durable")
        a.type("hello")
        await wait(a, lambda s: "ccx: turn 1 done" in s and prompt_shown(s))
        a.type(f"[tool:touch {denied}]")
        await wait(a, lambda s: "allow? [y/n]" in s)

        # B joins while the request is pending: the past is shown again, then it is asked.
        b.type(f"{CCX} claude attach --url {served.url} {run}; echo EXIT=$?")
        screen = await wait(b, lambda s: "allow? [y/n]" in s)
        assert "» hello" in lines(screen), screen  # someone else's messages, replayed
        assert PLAIN_TEXT in lines(screen), screen
        assert f"ccx: Claude wants to use Bash: touch {denied}" in screen
        b.type("n not from here")
        screen = await wait(a, lambda s: "was denied by client:" in s)
        await wait(a, lambda s: "ccx: turn 2 done" in s and prompt_shown(s))
        await wait(b, lambda s: "ccx: turn 2 done" in s and prompt_shown(s))
        assert not denied.exists()  # the deny reached the CLI: the tool did not run

        b.type(f"from b [tool:touch {made}]")  # B types; both are asked
        await wait(b, lambda s: s.count("allow? [y/n]") == 2)
        screen = await wait(a, lambda s: s.count("allow? [y/n]") == 2)
        assert f"» from b [tool:touch {made}]" in lines(screen), screen
        a.type("y")
        await wait(b, lambda s: "was allowed by client:" in s)
        await wait(b, lambda s: "ccx: turn 3 done" in s and prompt_shown(s))
        await wait(a, lambda s: "ccx: turn 3 done" in s and prompt_shown(s))
        assert made.exists()

        b.keys("C-d")  # B leaves; the session goes on for A
        screen = await wait(b, lambda s: exit_status(s) is not None)
        assert exit_status(screen) == 0
        assert f"ccx: left session {run}; it goes on" in screen
        async with open_connection(served.url) as conn:
            assert (await conn.run_status(run)).state == "running"

        a.keys("C-d")
        screen = await wait(a, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    assert f"ccx: session {run} closed (3 turn(s)" in screen
    assert_nothing_left(run)


async def test_a_line_typed_while_a_turn_runs_is_queued_then_answered(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, world.config())
    async with open_pane(tmp_path) as pane:
        run = await start_session(pane, served.url, world)
        pane.type("[slow:30]")
        await wait(pane, lambda s: "chunk 1" in s)
        pane.type("meanwhile")  # the turn still streams
        await wait(pane, lambda s: "ccx: queued behind turn 1 (message m-2)" in s)
        # Taken by the running turn, or the next turn's: either way it is answered.
        screen = await wait(pane, lambda s: PLAIN_TEXT in lines(s) and prompt_shown(s))
        assert "chunk 29" in screen
        pane.keys("C-d")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    assert_nothing_left(run)


async def test_a_session_ended_elsewhere_says_how_and_exits_1(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, world.config())
    async with open_pane(tmp_path) as pane:
        run = await start_session(pane, served.url, world)
        async with open_connection(served.url) as conn:
            await conn.call("control", {"run": run, "type": "CANCEL"})
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 1, screen
    assert re.search(rf"^ccx: session {run} ended: .+ \(0 turn\(s\), \$0\.0000\)$", screen, re.M)
    assert_nothing_left(run)


async def test_model_pause_and_a_withdrawn_request_are_said_in_words(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    # The CLI's echo of a set_model ("<local-command-stdout>Set model to ...") was shown as a
    # message someone else sent ("» <local-command-stdout>..."), a pause by another client
    # said nothing (a line typed then seemed lost), and a withdrawn request "was denied by
    # cancelled".
    served = await start_daemon(nursery, world.config())
    async with open_pane(tmp_path) as pane, open_connection(served.url) as conn:
        run = await start_session(pane, served.url, world)

        pane.type("/model opus")
        await wait(pane, lambda s: "ccx: model opus from the next request on" in s)
        await conn.call("claude.set_model", {"run": run, "model": "sonnet"})  # someone else's
        screen = await wait(pane, lambda s: "ccx: Set model to sonnet" in s)
        assert "Set model to opus" not in screen, screen  # ours is said once, by us
        assert "local-command" not in screen, screen
        assert "»" not in screen, screen

        await conn.call("control", {"run": run, "type": "PAUSE"})
        await wait(
            pane,
            lambda s: (
                f"ccx: the session is paused (ccx --url {served.url} resume {run} resumes it)" in s
            ),
        )
        pane.type("hello")
        await conn.call("control", {"run": run, "type": "RESUME"})
        screen = await wait(pane, lambda s: "ccx: turn 1 done" in s and prompt_shown(s))
        assert "ccx: the session is resumed" in lines(screen), screen

        pane.type(f"[tool:touch {world.work / 'never.txt'}]")
        screen = await wait(pane, lambda s: "allow? [y/n]" in s)
        await conn.call("claude.interrupt", {"run": run})
        screen = await wait(pane, lambda s: "ccx: turn 2 interrupted" in s and prompt_shown(s))
        assert re.search(
            r"^ccx: request \S+ was withdrawn \(the turn or the session ended first\)$",
            screen,
            re.M,
        ), screen
        pane.keys("C-d")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 0, screen
    assert_nothing_left(run)


async def test_a_durable_session_whose_daemon_dies_says_where_to_look(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    # "lost the session: the connection ... was lost" said nothing of the durable session.
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
    ):
        run = await start_session(pane, daemon.url, world, "--durable")
        daemon.process.kill()  # SIGKILL: ccx's reconnects find nothing
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 1, screen
    joined = " ".join(lines(screen))  # the line may wrap
    assert "ccx: lost the session: " in joined, screen
    assert f"ccx --url {daemon.url} claude attach {run} says what became of it" in joined, screen


async def test_ctrl_c_while_the_session_closes_ends_it_now(
    nursery: trio.Nursery, world: ClaudeWorld, tmp_path: Path
) -> None:
    # After Ctrl-D (stdin EOF) an interrupt can no longer reach the CLI: Ctrl-C said
    # "interrupting turn 1", the daemon refused it (closing) and the turn streamed on until
    # the close grace ran out.
    served = await start_daemon(nursery, world.config())
    async with open_pane(tmp_path) as pane:
        run = await start_session(pane, served.url, world)
        pane.type("[slow:300]")
        await wait(pane, lambda s: "chunk 2" in s)
        pane.keys("C-d")
        await wait(pane, lambda s: f"ccx: closing session {run}" in s)
        pane.keys("C-c")
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert f"ccx: ending session {run} now" in screen, screen
    assert "chunk 299" not in screen, screen
    assert exit_status(screen) == 0, screen
    assert_nothing_left(run)


async def test_a_connection_lost_under_a_typed_line_is_said_once(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    # The line's claude.send raised ConnectionLost out of the reader: after "lost the session"
    # came a second line, "ccx: lost the connection to URL: the connection to URL was lost".
    state = str(tmp_path / "state")
    async with (
        run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
        open_pane(tmp_path) as pane,
    ):
        pane.type(f"{CCX} claude --url {daemon.url} --cwd {world.work}; echo EXIT=$?")
        screen = await wait(pane, prompt_shown)
        os.kill(daemon.process.pid, signal.SIGSTOP)  # the line's request waits for a reply
        pane.type("hello")
        await wait(pane, lambda s: "hello" in s)
        os.kill(daemon.process.pid, signal.SIGKILL)  # and the connection goes under it
        screen = await wait(pane, lambda s: exit_status(s) is not None)
    assert exit_status(screen) == 1, screen
    said = [line for line in lines(screen) if line.startswith("ccx: ")]
    # The reader and the shower each say their part, in either order; nothing else follows.
    assert {line.split(":")[1] for line in said[-2:]} == {" lost the session", " not sent"}, screen
    assert not any(line.startswith("ccx: lost the connection") for line in said), screen
