"""Daemons' records without a file descriptor to spare, for real (RLIMIT_NOFILE).

Observed on main: ``ccx serve`` under ``prlimit --nofile=N`` with N just above what it holds
once it listens died at start with a traceback (EMFILE importing the request path, after its
record had taken the last descriptor), and with one descriptor fewer it could not listen at all;
the first limit it served under left it a descriptor for its record.  Now loading the request
path ahead is given up under EMFILE (``daemon.warm_failed``: the first request loads it), so at
the tightest limit it listens under it serves without a record (``daemon.record_failed``) and
makes it once descriptors come back; a dead daemon's record it cannot open, or whose processes
it cannot look for, stays for a later start (``daemon.leftovers_unchecked``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import trio
from ccx_testing import run_daemon
from daemon_records_testing import logged, marked_sleep, records
from durable_testing import open_durable_client
from faults_journal_testing import descriptors_exhausted

from cc_executor.executor.daemon.record import DaemonRecord, directory_of, sweep
from cc_executor.supervision import SupervisionConfig

DEAD = "d" * 32
QUICK = attrs.evolve(SupervisionConfig(), procfs_retries=2)  # the retries' count is not tested


def dead_record(state: Path) -> subprocess.Popen[bytes]:
    """What a daemon SIGKILLed leaves: its record, unlocked, and a process of one of its runs."""
    directory = Path(directory_of(str(state)))
    directory.mkdir(parents=True)
    (directory / f"{DEAD}.lock").touch()
    return marked_sleep(DEAD)


def soft_limit(pid: int, limit: int) -> None:
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:"], check=True)


async def listens_under(limit: int, state: Path) -> bool:
    """Whether ``ccx serve`` under ``prlimit --nofile=<limit>`` gets to listen (then stopped)."""
    command = ["prlimit", f"--nofile={limit}:", sys.executable, "-m", "cc_executor.executor"]
    command += ["serve", "--port", "0", "--state-dir", str(state), "--shutdown-grace", "0"]
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        with trio.fail_after(30):
            seen = b""
            async for chunk in process.stderr:
                seen += chunk
                if b'"daemon.listening"' in seen:
                    return True
            return False
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def tightest_limit(scratch: Path) -> int:
    """The lowest RLIMIT_NOFILE a daemon listens under (a few starts, the limit rising)."""
    for limit in range(4, 64):
        if await listens_under(limit, scratch / str(limit)):
            return limit
    raise AssertionError("no limit below 64 lets the daemon listen")


async def test_at_the_tightest_limit_the_daemon_serves_and_keeps_the_dead_record(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    leftover = dead_record(state)
    try:
        with trio.fail_after(180):
            limit = await tightest_limit(tmp_path / "scratch")
            wrapper = ["prlimit", f"--nofile={limit}:"]
            async with run_daemon("--state-dir", str(state), wrapper=wrapper) as daemon:
                await daemon.wait_logged("daemon.record_failed")
                [failed] = logged(daemon.stderr_lines, "daemon.record_failed")
                assert "Too many open files" in str(failed["error"])
            # Stopped before a descriptor came back: the dead daemon's record and its process
            # are as they were, for a later start.
            assert leftover.poll() is None
            assert records(str(state)) == [f"{DEAD}.lock"]
            async with run_daemon("--state-dir", str(state), wrapper=wrapper) as daemon:
                await daemon.wait_logged("daemon.record_failed")
                soft_limit(daemon.process.pid, 1024)  # descriptors come back
                async with open_durable_client(daemon.url) as client:
                    run = (await client.call("execute", argv=["echo", "served"]))["run"]
                    assert (await client.wait_completed(run)).stdout == b"served\n"
                await daemon.wait_logged("daemon.record_restored")
                await daemon.wait_logged("daemon.records_checked")
                assert leftover.wait(timeout=10) == -signal.SIGKILL
                [own] = records(str(state))
                assert own != f"{DEAD}.lock"
    finally:
        if leftover.poll() is None:
            leftover.kill()
        leftover.wait(timeout=10)


def test_a_dead_record_that_cannot_be_opened_or_looked_into_stays(tmp_path: Path) -> None:
    """EMFILE in the sweep itself (the test process's soft limit, every descriptor under it
    taken): with none, the record cannot be opened; with one, /proc cannot be read."""
    leftover = dead_record(tmp_path)
    try:
        for spare in (0, 1):
            with descriptors_exhausted(spare=spare):
                swept = sweep(str(tmp_path), [DEAD], QUICK)
            assert swept.ended == []
            assert swept.exhausted is not None
            assert "Too many open files" in swept.exhausted
            assert leftover.poll() is None
            assert records(str(tmp_path)) == [f"{DEAD}.lock"]
        # Descriptors back: a later sweep ends it.
        [ended] = sweep(str(tmp_path), [DEAD], QUICK).ended
        assert ended.killed == [leftover.pid]
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        assert records(str(tmp_path)) == []
    finally:
        if leftover.poll() is None:
            leftover.kill()
        leftover.wait(timeout=10)


def test_a_record_that_cannot_be_made_again_says_so_and_is_made_once_it_can(
    tmp_path: Path,
) -> None:
    """EMFILE when the record must be made again (removed by hand)."""
    record = DaemonRecord.claim(str(tmp_path))
    assert record.fd is not None
    os.unlink(record.path)
    try:
        with descriptors_exhausted():
            assert record.renew() is False
        assert "Too many open files" in str(record.error)
        assert record.renew() is True
        assert (record.error, record.fd is not None) == (None, True)
        assert records(str(tmp_path)) == [f"{record.daemon_id}.lock"]
    finally:
        record.release(QUICK)
