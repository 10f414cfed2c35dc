"""tmux for the terminal tests: a private tmux server per pane, driven with send-keys and read
with capture-pane.

Each pane runs its own tmux server on a private socket (`tmux -L <unique>`) and kills only it.
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
from contextlib import asynccontextmanager
from pathlib import Path

import trio

TMUX = shutil.which("tmux")
CCX = shlex.join([sys.executable, "-m", "cc_executor.executor"])
BOUND = 30
# `ccx` on PATH (hints are printed as `ccx ...`), a plain prompt.
SHELL_ENV = {
    "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
    "PS1": "$ ",
    "TERM": "xterm",
}
EXIT = re.compile(r"^EXIT=(\d+)$", re.MULTILINE)


def exit_status(screen: str) -> int | None:
    found = EXIT.search(screen)
    return None if found is None else int(found.group(1))


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
        # -J joins lines the terminal wrapped, so long messages match as one line.
        return self.tmux("capture-pane", "-p", "-J", "-t", "main")

    async def wait_for(self, found: Callable[[str], bool], bound: float = BOUND) -> str:
        with trio.fail_after(bound):
            while True:  # bounded by fail_after; a terminal has no event to wait on
                screen = self.screen()
                if found(screen):
                    return screen
                await trio.sleep(0.05)


@asynccontextmanager
async def open_pane(cwd: Path) -> AsyncIterator[Pane]:
    """A pane running `sh -i` in `cwd`; its tmux server is killed on leaving."""
    pane = Pane(f"ccx-test-{os.getpid()}-{secrets.token_hex(4)}")
    env = {**os.environ, **SHELL_ENV}
    assert TMUX is not None
    await trio.run_process(
        [TMUX, "-L", pane.socket, "-f", "/dev/null", "new-session", "-d", "-s", "main",
         "-x", "160", "-y", "50", "sh", "-i"],
        check=True, env=env, cwd=cwd,
    )  # fmt: skip
    try:
        yield pane
    finally:
        with trio.move_on_after(BOUND, shield=True):
            await trio.run_process([TMUX, "-L", pane.socket, "kill-server"], check=False)
