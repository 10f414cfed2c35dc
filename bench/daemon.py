"""Start the daemon as a real process on a free loopback port, and stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import orjson

START_BOUND = 30.0
STOP_BOUND = 15.0
FD_LIMIT = 16384  # W5: every connection holds a socket, two pipes and a pidfd in the daemon


@attrs.frozen
class Daemon:
    pid: int
    port: int


def raise_fd_limit() -> None:
    """Raise this process's (and so its children's) soft descriptor limit for W5."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FD_LIMIT if hard == resource.RLIM_INFINITY else min(FD_LIMIT, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextmanager
def running_daemon(*args: str, env: dict[str, str] | None = None) -> Iterator[Daemon]:
    """`python -m cc_executor.executor serve --port 0 ...`, its port read from its log; `env`
    adds to this process's environment.  Without a `--state-dir` in `args` it gets a fresh
    one of its own: a daemon on the user's state directory would first recover whatever
    journals lie there, and the bench would measure that too."""
    raise_fd_limit()
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as state:
        if "--state-dir" not in args:
            args = ("--state-dir", state, *args)
        process = subprocess.Popen(
            [sys.executable, "-m", "cc_executor.executor", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
        try:
            yield Daemon(process.pid, _wait_for_port(process, log.fileno()))
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_BOUND)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], log_fd: int) -> int:
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        text = os.pread(log_fd, 1 << 20, 0)
        for line in text.splitlines():
            if b'"daemon.listening"' in line:
                return int(orjson.loads(line)["ports"][0])
        if process.poll() is not None:
            raise RuntimeError(f"the daemon exited: {text.decode(errors='replace')}")
        time.sleep(0.05)
    raise TimeoutError("the daemon did not report its port")
