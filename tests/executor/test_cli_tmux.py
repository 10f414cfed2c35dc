"""`ccx` in a real terminal: tmux panes driven with send-keys and read with capture-pane.

Each test runs its own tmux server on a private socket (`tmux -L <unique>`) and kills only it.
Screens are polled with a bound; nothing depends on how long anything takes.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio
from ccx_testing import Served

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (apt-get install -y tmux)"
)
CCX = shlex.join([sys.executable, "-m", "cc_executor.executor"])
BOUND = 30


class Pane:
    """One tmux server with one window running an interactive shell."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        return subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def type(self, line: str) -> None:
        self.tmux("send-keys", "-t", "main", "-l", line)
        self.tmux("send-keys", "-t", "main", "Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "main", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "main")

    async def wait_for(self, found: Callable[[str], bool]) -> str:
        with trio.fail_after(BOUND):
            while True:  # bounded by fail_after; a terminal has no event to wait on
                screen = self.screen()
                if found(screen):
                    return screen
                await trio.sleep(0.05)


@pytest.fixture
async def pane(tmp_path: Path) -> AsyncIterator[Pane]:
    pane = Pane(f"ccx-test-{os.getpid()}-{secrets.token_hex(4)}")
    env = {**os.environ, "PS1": "$ ", "TERM": "xterm"}
    assert TMUX is not None
    await trio.run_process(
        [TMUX, "-L", pane.socket, "-f", "/dev/null", "new-session", "-d", "-s", "main",
         "-x", "160", "-y", "40", "sh", "-i"],
        check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        yield pane
    finally:
        with trio.move_on_after(BOUND, shield=True):
            await trio.run_process([TMUX, "-L", pane.socket, "kill-server"], check=False)


async def test_ctrl_c_cancels_the_run_and_exits_1(served: Served, pane: Pane) -> None:
    pane.type(f"{CCX} run --url {served.url} -- sh -c 'echo started; sleep 30'; echo EXIT=$?")
    await pane.wait_for(lambda s: "started" in s.splitlines())  # the output, not the command
    pane.keys("C-c")
    screen = await pane.wait_for(lambda s: re.search(r"^EXIT=\d+$", s, re.MULTILINE) is not None)
    assert "EXIT=1" in screen.splitlines()
    assert "cancelled (sigterm)" in screen


async def test_status_line_on_stderr_never_in_stdout(
    served: Served, pane: Pane, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    pane.type(f"{CCX} run --url {served.url} -- sh -c 'echo begin; sleep 30' > {out}")
    pattern = re.compile(r"ccx: run [0-9a-f]+ running \d+\.\ds \d+ B seq \d+")
    await pane.wait_for(lambda s: pattern.search(s) is not None)
    pane.keys("C-c")
    await pane.wait_for(lambda s: "cancelled" in s)
    assert out.read_bytes() == b"begin\n"  # the status line went to the terminal only


async def test_status_line_is_erased_and_output_stays_whole(served: Served, pane: Pane) -> None:
    script = "echo first; sleep 1; echo second; sleep 30"
    pane.type(f"{CCX} run --url {served.url} -- sh -c '{script}'")
    await pane.wait_for(lambda s: "second" in s.splitlines() and "running" in s)
    pane.keys("C-c")
    screen = await pane.wait_for(lambda s: "cancelled" in s)
    lines = screen.splitlines()
    assert "first" in lines, screen
    assert "second" in lines, screen  # never overwritten by, nor glued to, the status line
    assert not any("running" in line for line in lines), screen  # erased before our messages


async def test_ctrl_z_pauses_and_fg_resumes(served: Served, pane: Pane) -> None:
    script = "i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.2; done"
    pane.type(f"{CCX} run --url {served.url} -- sh -c '{script}'")
    await pane.wait_for(lambda s: "tick2" in s.splitlines())
    pane.keys("C-z")
    screen = await pane.wait_for(lambda s: "paused; `fg` resumes it" in s)
    ticks = re.findall(r"^tick(\d+)$", screen, re.MULTILINE)
    pane.type("fg")
    last = int(ticks[-1])
    await pane.wait_for(lambda s: f"tick{last + 2}" in s.splitlines())
    pane.keys("C-c")
    await pane.wait_for(lambda s: "cancelled" in s)
