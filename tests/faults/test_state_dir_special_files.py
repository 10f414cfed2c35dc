"""Special files where the daemon expects its own regular files: never a blocked open.

Observed on main (an outside fault probe): ``open(2)`` of a FIFO waits for a writer, for ever.
A FIFO (or a symlink to one) put in place of a finished run's journal froze the whole daemon at
the next ``attach`` (the cursor opened it on the event loop's thread); a FIFO named
``<journal>.creating`` froze the recovery of the state directory, so every lookup waited for
ever; a FIFO named ``<journal>.compact`` blocked retention's worker thread, and with it the
drain (SIGTERM was logged, nothing more); a directory named ``<journal>.reserve`` made a
readable journal unreadable.  Every open of the daemon's files now goes through
supervision/files.py (no link followed, no blocking, a regular file or an error).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio
from ccx_testing import run_daemon
from durable_testing import DurableClient, open_durable_client
from faults_journal_testing import wait_notification

from cc_executor.supervision.files import NotRegularFile, open_regular
from cc_executor.supervision.journal import Journal, JournalConfig, Meta, boot_id
from cc_executor.supervision.journal_config import ABANDONED_AFTER


def fifo_at(path: Path, *, through_link: bool) -> None:
    """Replace `path` with a FIFO, or with a symlink to one beside it."""
    path.unlink(missing_ok=True)
    if through_link:
        target = path.with_name(path.name + ".fifo-target")
        os.mkfifo(target)
        path.symlink_to(target)
    else:
        os.mkfifo(path)


async def recorded(client: DurableClient, text: str) -> str:
    """A durable run of `echo text`, completed: its journal is whole."""
    run = await client.execute(argv=["echo", text], durable=True)
    await client.wait_completed(run)
    return run


@pytest.mark.parametrize("through_link", [False, True], ids=["fifo", "link-to-fifo"])
async def test_a_fifo_in_place_of_a_journal_is_a_journal_error_and_the_daemon_serves(
    tmp_path: Path, through_link: bool
) -> None:
    state = tmp_path / "state"
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = await recorded(client, "recorded")
            fifo_at(state / "journals" / f"{run}.journal", through_link=through_link)
            async with open_durable_client(daemon.url) as other:
                await other.request("attach", {"run": run, "from_seq": 0})
                fault = await wait_notification(other, "process.journal_error", run)
                assert "not a regular file" in fault["reason"] or "symbolic" in fault["reason"]
                # The daemon was never blocked: a new run goes through, and so does status.
                fresh = await other.execute(argv=["echo", "hi"])
                assert (await other.wait_completed(fresh)).stdout == bytearray(b"hi\n")
                assert (await other.call("status", run=run))["status"] == "completed"


def something_at(path: Path) -> bool:
    """Whether anything, a dangling link included, is at `path`."""
    return os.path.lexists(path)


def stale(path: Path) -> None:
    """Make `path` look older than any creation in progress."""
    old = time.time() - ABANDONED_AFTER - 60
    os.utime(path, (old, old), follow_symlinks=False)


@pytest.mark.parametrize("through_link", [False, True], ids=["fifo", "link-to-fifo"])
async def test_a_fifo_named_creating_is_removed_and_recovery_ends(
    tmp_path: Path, through_link: bool
) -> None:
    journals = tmp_path / "state" / "journals"
    journals.mkdir(parents=True)
    creating = journals / "ghost-1.journal.creating"
    fifo_at(creating, through_link=through_link)
    stale(creating)
    meta = Meta("kept-1", 1, 1, ("true",), time.time(), boot_id(), 1 << 20, "block", "local")
    kept = Journal.create(str(journals / "kept-1.journal"), meta, JournalConfig(fsync="never"))
    await kept.close()  # no completion: recovered as lost
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(tmp_path / "state")) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            listed = await client.call("list")  # waits for recovery: it ends
            assert [r["run"] for r in listed["runs"]] == ["kept-1"]
            assert not something_at(creating)


async def test_a_fifo_named_compact_does_not_stop_retention_or_the_drain(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(60):
        async with run_daemon(
            "--state-dir", str(state), "--retention-seconds", "0.5", "--retention-bytes", "1"
        ) as daemon:
            async with open_durable_client(daemon.url) as client:
                # The FIFO is there before the run ends: retention may compact at its end.
                flag = tmp_path / "flag"
                words = f"while [ ! -e {flag} ]; do sleep 0.01; done; echo old"
                run = await client.execute(argv=["sh", "-c", words], durable=True)
                journal = state / "journals" / f"{run}.journal"
                os.mkfifo(str(journal) + ".compact")
                flag.touch()
                await client.wait_completed(run)
            # Retention compacts it (the FIFO is removed, never opened) ...
            await daemon.wait_logged("journal.removed")
            assert not something_at(Path(f"{journal}.compact"))
        # ... and the daemon drained and stopped (run_daemon checks its exit status).


async def test_a_directory_named_reserve_leaves_the_journal_readable(tmp_path: Path) -> None:
    journals = tmp_path / "state" / "journals"
    state = tmp_path / "state"
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = await recorded(client, "kept")
    (journals / f"{run}.journal.reserve").mkdir()
    for _ in range(2):  # at every start, not only the first
        with trio.fail_after(60):
            async with (
                run_daemon("--state-dir", str(state)) as daemon,
                open_durable_client(daemon.url) as client,
            ):
                assert [r["run"] for r in (await client.call("list"))["runs"]] == [run]
                await daemon.wait_logged("journal.reserve_not_removed")


def test_open_regular_refuses_what_is_not_a_regular_file_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    for name, flags in [("fifo", os.O_RDONLY), ("fifo", os.O_RDWR), ("dir", os.O_RDONLY)]:
        with pytest.raises(NotRegularFile):
            open_regular(str(tmp_path / name), flags)
    with pytest.raises(OSError, match="No such device"):  # ENXIO: a FIFO without a reader
        open_regular(str(tmp_path / "fifo"), os.O_WRONLY)
    with pytest.raises(OSError, match="symbolic links"):
        open_regular(str(tmp_path / "link"), os.O_RDONLY)
    fd = open_regular(str(tmp_path / "link"), os.O_RDONLY, follow=True)
    try:
        assert os.get_blocking(fd)
        assert os.read(fd, 10) == b"x"
    finally:
        os.close(fd)
