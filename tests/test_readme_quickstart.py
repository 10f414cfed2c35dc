"""The README's quick start, run verbatim on a fresh copy of the repository: a new `.venv`, the
documented lines in order — the daemon's block in one shell, the client's in another.

Slow-ish (the first `./dev` installs everything, as on a fresh machine) and bounded. The
environment points the documented defaults at a free loopback port and a private state dir, so
that the lines run as written without meeting a daemon already on 8003.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import orjson
import pytest
import trio
from ccx_testing import unused_port

ROOT = Path(__file__).resolve().parents[1]
INSTALL_BOUND = 600  # creating the venv and installing, on a loaded box
RUN_BOUND = 120


def quick_start_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL)


def fresh_copy(to: Path) -> Path:
    """The repository's files as a clone has them: tracked and new ones, nothing ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


def test_the_readme_has_a_daemon_block_and_a_client_block() -> None:
    daemon, client = quick_start_blocks()
    assert daemon.strip().startswith("./dev serve")
    assert "ccx" in client


@pytest.mark.slow
async def test_the_quick_start_works_as_written(tmp_path: Path) -> None:
    daemon_block, client_block = quick_start_blocks()
    clone = fresh_copy(tmp_path / "clone")
    port = unused_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCX_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(
        CCX_PORT=str(port),
        CCX_URL=f"ws://127.0.0.1:{port}/",
        CCX_STATE_DIR=str(tmp_path / "state"),
    )
    async with trio.open_nursery() as nursery:
        daemon = await trio.lowlevel.open_process(
            ["sh", "-e", "-c", daemon_block],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # the shell, ./dev and the daemon it execs: one group
        )
        assert daemon.stderr is not None
        said: list[bytes] = []
        listening = trio.Event()
        gone = trio.Event()  # every process holding the daemon's stderr has exited

        async def read_daemon() -> None:
            assert daemon.stderr is not None
            buffer = b""
            async for chunk in daemon.stderr:
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    said.append(line)
                    if line.startswith(b"{") and orjson.loads(line)["event"] == "daemon.listening":
                        listening.set()
            gone.set()

        nursery.start_soon(read_daemon)
        try:
            with trio.fail_after(INSTALL_BOUND):
                await listening.wait()
            # The first install said what it was doing, and where ccx is.
            progress = b"\n".join(said)
            assert b"./dev: installing cc-executor" in progress
            assert b"  Collecting trio" in progress
            with trio.fail_after(RUN_BOUND):
                client = await trio.run_process(
                    ["sh", "-e", "-c", client_block],
                    cwd=clone,
                    env=env,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        finally:
            with trio.move_on_after(RUN_BOUND, shield=True):
                os.killpg(daemon.pid, signal.SIGTERM)  # as Ctrl-C would reach them all
                await gone.wait()
                await daemon.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGKILL)  # whatever did not drain in time
            nursery.cancel_scope.cancel()
    assert client.returncode == 0, client.stderr.decode()
    out = client.stdout.decode().splitlines()
    assert out[0] == "hello"
    assert out[1].strip().isdigit()  # ls | wc -l, through sh -c
    assert out[2].split() == ["RUN", "STATE", "AGE", "BYTES", "SEQ", "COMMAND"]
    assert client.stderr == b""  # the venv was installed by the daemon's block already
