"""A run lost with its daemon whose journal cannot be read still has its leftovers killed.

Observed on main: after a daemon was SIGKILLed, a live run's journal that the next daemon
could not read (its permissions removed — chmod 000 under a daemon that is not root —, or a
symbolic link, a directory, a FIFO put in its place) was logged as unreadable and the run left
unknown, and so were its processes: still running, for as long as that daemon ran, with no
daemon supervising them.  Now the processes carrying the run's marker (the id its file's name
says) are killed, unless a live daemon holds a lock on that file (one sharing the directory,
which supervises the run).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from ccx_testing import alive, pids_in_file, run_daemon, wait_until
from durable_testing import open_durable_client

SCRIPT = "echo $$ >> {pids}; setsid sh -c 'echo $$ >> {pids}; exec sleep 300' & exec sleep 300"


async def start_and_crash(state: Path, pid_file: Path) -> tuple[str, list[int]]:
    """A durable run (its root and a process that left its session), then the daemon
    SIGKILLed: its run and pids, still alive."""
    async with (
        run_daemon("--state-dir", str(state)) as daemon,
        open_durable_client(daemon.url) as client,
    ):
        argv = ["sh", "-c", SCRIPT.format(pids=pid_file)]
        run = (await client.call("execute", argv=argv, durable=True))["run"]
        await wait_until(lambda: pid_file.exists() and len(pids_in_file(str(pid_file))) == 2)
        daemon.process.send_signal(signal.SIGKILL)
        await daemon.process.wait()
    pids = pids_in_file(str(pid_file))
    assert all(alive(pid) for pid in pids)
    return run, pids


def kill_all(pids: list[int]) -> None:
    """The test's own processes, whatever happened."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def posing_as_its_daemon(state: Path) -> Iterator[None]:
    """Hold the crashed daemon's record as it would if it lived (another daemon sharing the
    directory): the next start then leaves its processes to it (executor/daemon/record.py)."""
    [record] = (state / "daemons").iterdir()
    fd = os.open(record, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def replace(journal: Path, kind: str) -> None:
    moved = journal.with_name("elsewhere")
    shutil.move(journal, moved)
    if kind == "symlink":
        journal.symlink_to(moved)
    elif kind == "directory":
        journal.mkdir()
    else:
        os.mkfifo(journal)


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
async def test_the_leftovers_of_a_run_whose_journal_cannot_be_read_are_killed(
    tmp_path: Path, kind: str
) -> None:
    state, pid_file = tmp_path / "state", tmp_path / "pids"
    with trio.fail_after(60):
        run, pids = await start_and_crash(state, pid_file)
        replace(state / "journals" / f"{run}.journal", kind)
        try:
            async with run_daemon("--state-dir", str(state)) as daemon:
                await wait_until(lambda: not any(alive(pid) for pid in pids), bound=15)
                await daemon.wait_logged("run.leftovers_killed")
                async with open_durable_client(daemon.url) as client:
                    error = await client.call_error("status", run=run)
                    assert error.code == -32002  # not read: a later start tries again
                    argv = ["echo", "x"]
                    done = (await client.call("execute", argv=argv, durable=True))["run"]
                    assert (await client.wait_completed(done)).stdout == b"x\n"
        finally:
            kill_all(pids)


async def test_a_run_whose_unreadable_journal_a_live_process_locks_is_left_alone(
    tmp_path: Path,
) -> None:
    # Another daemon sharing the directory would hold the lock: the run is its to supervise.
    state, pid_file = tmp_path / "state", tmp_path / "pids"
    with trio.fail_after(60):
        run, pids = await start_and_crash(state, pid_file)
        journal = state / "journals" / f"{run}.journal"
        replace(journal, "fifo")
        holder = os.open(journal, os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.flock(holder, fcntl.LOCK_EX)
            with posing_as_its_daemon(state):
                async with run_daemon("--state-dir", str(state)) as daemon:
                    await daemon.wait_logged("run.leftovers_checked")
                    await daemon.wait_logged("daemon.records_checked")
                    assert all(alive(pid) for pid in pids)
                    assert any('"looked":false' in line for line in daemon.stderr_lines)
        finally:
            os.close(holder)
            kill_all(pids)


async def test_a_link_to_a_journal_a_live_process_locks_is_left_alone(tmp_path: Path) -> None:
    # The link's own inode is locked by nobody; the journal it leads to is (another daemon's,
    # whose run is alive): its lock is looked for too.
    state, pid_file = tmp_path / "state", tmp_path / "pids"
    with trio.fail_after(60):
        run, pids = await start_and_crash(state, pid_file)
        journal = state / "journals" / f"{run}.journal"
        replace(journal, "symlink")
        holder = os.open(journal, os.O_RDONLY)  # the journal the link leads to
        try:
            fcntl.flock(holder, fcntl.LOCK_EX)
            with posing_as_its_daemon(state):
                async with run_daemon("--state-dir", str(state)) as daemon:
                    await daemon.wait_logged("run.leftovers_checked")
                    await daemon.wait_logged("daemon.records_checked")
                    assert all(alive(pid) for pid in pids)
        finally:
            os.close(holder)
            kill_all(pids)
