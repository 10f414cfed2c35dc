"""Keeping a damaged tail aside on a real small disk (a tmpfs mounted by the test).

Observed on main: a finished journal whose completion has one flipped byte, on a disk with
less free space than the journal: the restart copied the whole journal to
``<run>.journal.damaged-*``, failed with ENOSPC (``journal.unreadable``) and the run vanished
from list, status and attach; the partial copy took the disk's last bytes and stayed, and every
further start added another.  A sparse tail (4 MB of hole) was copied at full size.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio
from ccx_testing import run_daemon
from durable_testing import open_durable_client
from faults_journal_testing import (
    fill,
    flip_byte,
    journal_reader,
    small_tmpfs,
    write_old_journals,
)

from cc_executor.supervision.events import Completed, CompletedEvent, Output
from cc_executor.supervision.journal import Journal, JournalConfig
from cc_executor.supervision.journal_codec import MAGIC, Record
from cc_executor.supervision.journal_reader import read_record
from cc_executor.supervision.journal_scan import KEEP_ASIDE_BYTES
from cc_executor.supervision.outcome import Exited

CONFIG = JournalConfig(fsync="never")


def last_record(path: Path) -> int:
    """The offset of the file's last record (a finished journal's completion)."""
    with open(path, "rb") as f:
        reader, size = journal_reader(path, f.fileno()), path.stat().st_size
        offset, last = len(MAGIC), 0
        while isinstance(record := read_record(reader, offset, size), Record):
            last, offset = offset, record.end
    return last


def kept(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if ".damaged-" in name)


async def damaged_journal(directory: Path, run: str, output: int = 300_000) -> tuple[Path, int]:
    """A finished run's journal (`output` bytes of it, in one record) whose completion fails
    its CRC, as an earlier daemon left it; and where that record starts."""
    await write_old_journals(directory, [run], lost=[run])
    path = directory / f"{run}.journal"
    journal = await trio.to_thread.run_sync(Journal.open, str(path), CONFIG)
    assert journal is not None
    data = b"x" * output
    await journal.deliver(Output(seq=2, stream="stdout", data=data))
    done = Completed(Exited(0), stdout_bytes=len(run) + 1 + output, stderr_bytes=0, duration=1.0)
    await journal.append_completion(CompletedEvent(seq=3, completed=done))
    completion = last_record(path)
    flip_byte(path, path.stat().st_size - 1)
    return path, completion


async def test_a_near_full_disk_keeps_nothing_aside_and_the_run_stays(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "2m") as disk, trio.fail_after(120):
        journals = disk / "state" / "journals"
        run = "r-nearfull"
        await damaged_journal(journals, run)
        filler = fill(disk)
        os.truncate(filler, filler.stat().st_size - 100 * 1024)  # less room than the journal
        for _start in range(2):  # every start: the run is there, and nothing piles up
            async with (
                run_daemon("--state-dir", str(disk / "state")) as daemon,
                open_durable_client(daemon.url) as client,
            ):
                runs = (await client.call("list"))["runs"]
                assert [r["run"] for r in runs] == [run]
                status = await client.call("status", run=run)
                assert status["outcome"] == "lost"  # its completion was the damaged tail
                assert status["journal"]["kept_aside"] is None  # said: not kept
                assert status["stdout_bytes"] == len(f"{run}\n") + 300_000  # its prefix
                await client.attach(run, 0)
                replayed = await client.wait_completed(run)
                assert replayed.completed is not None
            assert kept(journals) == []  # no partial copy, now or after the next start


async def test_a_failed_copy_leaves_no_partial_file_and_is_not_tried_again(
    tmp_path: Path,
) -> None:
    """Recovery's own read (Journal.open) on a full disk: the journal reads from its prefix."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        path, completion = await damaged_journal(disk / "j", "r-full")
        fill(disk)
        journal = await trio.to_thread.run_sync(Journal.open, str(path), CONFIG)
        assert journal is not None
        os.close(journal._fd or -1)
        assert journal.kept_aside is None
        assert journal.completed is None
        assert journal.last_seq == 2
        assert path.stat().st_size == completion  # cut all the same
        assert kept(disk / "j") == []
        again = await trio.to_thread.run_sync(Journal.open, str(path), CONFIG)
        assert again is not None
        os.close(again._fd or -1)
        assert again.truncated_bytes == 0  # nothing left to keep aside or cut
        assert again.damaged == []


async def test_a_sparse_damaged_tail_is_kept_bounded_and_without_its_holes(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", "16m") as disk:
        path, completion = await damaged_journal(disk / "j", "r-sparse", output=1000)
        original = path.read_bytes()
        size = 64 * 1024 * 1024  # four times the disk, all hole
        os.truncate(path, size)
        journal = await trio.to_thread.run_sync(Journal.open, str(path), CONFIG)
        assert journal is not None
        os.close(journal._fd or -1)  # never left open: the disk is unmounted after
        assert journal.kept_aside is not None
        aside = trio.Path(journal.kept_aside)
        info = await aside.stat()
        assert info.st_blocks * 512 <= 64 * 1024  # the damaged record's page, not the holes
        kept_bytes = await aside.read_bytes()
        assert kept_bytes[: len(original)] == original  # at its offsets; the rest is a hole
        assert info.st_size == size
        assert size > KEEP_ASIDE_BYTES
        assert path.stat().st_size == completion
