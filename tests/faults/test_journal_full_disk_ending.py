"""A run that ends while its journal's write fails on a real full disk (a small tmpfs).

Observed on main (F3): under the default error policy `block`, a run whose output was still
queued when it exited (output and completion in one batch write) lost all of it at the first
ENOSPC: the write was short, the file was cut back, the reserve was released and the output
dropped at once, never retried, though the disk had room for it (50 KB free plus the 64 KiB
reserve for 100 KB), or space came back a moment later.  `status` said 100000 stdout bytes; the
live client and every replay got none, only ``process.gap "not recorded: …short write"``.
Also: a run whose processes ended gave up the write's retries, so its output was dropped even
when the disk was freed right after; and under either policy a short write's records that had
been written were cut and reported as a gap.

Now a short write goes on where it stopped (the whole records it wrote are committed at once),
the reserve is released for the completion's batch when it makes room for the rest of it, and
under `block` the write is retried until the disk takes it whether or not the run's processes
are still there (only a CANCEL or the daemon stopping gives it up).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import trio
from ccx_testing import proc_stat, run_daemon, wait_until
from durable_testing import DurableClient, open_durable_client
from faults_journal_testing import (
    fill,
    journal_meta,
    read_all,
    small_tmpfs,
    status_until,
    wait_notification,
)

from cc_executor.supervision.events import Completed, CompletedEvent, Output
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, JournalFault, Replayed
from cc_executor.supervision.outcome import Exited

CHUNK = 4000  # one output record's data


def output(seq: int) -> Output:
    return Output(seq=seq, stream="stdout", data=bytes([97 + seq % 26]) * CHUNK)


def completion(seq: int, outputs: int) -> CompletedEvent:
    done = Completed(Exited(0), stdout_bytes=outputs * CHUNK, stderr_bytes=0, duration=1.0)
    return CompletedEvent(seq=seq, completed=done)


def leave_free(disk: Path, free: int) -> Path:
    """A filler that leaves about `free` bytes of `disk` free."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        f.write(bytes(max(0, shutil.disk_usage(disk).free - free)))
    return filler


def without_faults(entries: list[Replayed]) -> list[Replayed]:
    return [e for e in entries if not isinstance(e, JournalFault)]


async def test_the_reserve_takes_the_rest_of_a_completions_batch_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """100 KB of output still queued with the completion, 50 KB free plus the 64 KiB reserve:
    the short write is continued in the space the reserve frees; every byte is recorded."""
    count = 25
    with small_tmpfs(tmp_path / "disk", "1m") as disk, trio.fail_after(30):
        config = JournalConfig(fsync="never")  # block; one batch: under batch_bytes
        journal = Journal.create(str(disk / "j"), journal_meta("ending"), config)
        filler = leave_free(disk, 50 * 1024)
        for seq in range(1, count + 1):
            await journal.deliver(output(seq))
        await journal.deliver(completion(count + 1, count))  # one write with the output
        await journal.close()
        entries = read_all(journal)
        assert journal.fault_count == 1  # it did meet the full disk
        assert journal.gap is None
        assert without_faults(entries) == [*map(output, range(1, count + 1)), completion(26, 25)]
        filler.unlink()
        reopened = Journal.open(journal.path, config)
        assert reopened is not None
        assert reopened.stdout_bytes == count * CHUNK
        assert reopened.completed == completion(count + 1, count)
        assert (reopened.damaged, reopened.truncated_bytes) == ([], 0)


async def test_a_short_write_commits_what_it_wrote_and_a_follower_gets_no_gap_for_it(
    tmp_path: Path,
) -> None:
    """Policy `cancel` gives the output up at the first fault: the records the short write got
    into the file are kept and read, live and from the file, and the gap starts after them."""
    count = 50  # 200 KB, on a disk with about 100 KB free
    with small_tmpfs(tmp_path / "disk", "1m") as disk, trio.fail_after(30):
        config = JournalConfig(fsync="never", error_policy="cancel")
        journal = Journal.create(str(disk / "j"), journal_meta("short"), config)
        leave_free(disk, 100 * 1024)
        followed: list[Replayed] = []

        async def follow() -> None:
            with journal.cursor(0) as cursor:
                while (entry := await cursor.read()) is not None:
                    followed.append(entry)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            for seq in range(1, count + 1):
                await journal.deliver(output(seq))
            await journal.flush()  # one short write
            await journal.deliver(completion(count + 1, count))
            await journal.close()
        outputs = [e for e in followed if isinstance(e, Output)]
        k = len(outputs)
        assert 0 < k < count  # the records written are read, not cut and called a gap
        assert outputs == [output(seq) for seq in range(1, k + 1)]
        gaps = [e for e in followed if isinstance(e, Gap)]
        assert [(g.seq, g.until_seq) for g in gaps] == [(k + 1, count)]
        assert followed[-1] == completion(count + 1, count)
        assert without_faults(read_all(journal)) == without_faults(followed)  # the file says so
        reopened = Journal.open(journal.path, config)
        assert reopened is not None
        assert reopened.stdout_bytes == k * CHUNK
        assert (reopened.damaged, reopened.truncated_bytes) == ([], 0)


# Waits for $GO, then writes 200,000 bytes in one write (two reads) and exits.
WAIT_THEN_WRITE = 'while [ ! -e $GO ]; do sleep 0.01; done; exec python3 -c "$WRITE"'
WRITE = "import os; os.write(1, b'a' * 200000)"


async def exit_onto_a_full_disk(client: DurableClient, disk: Path, go: Path) -> tuple[str, Path]:
    """Start a durable run that writes its last output and exits once `disk` is full; return
    the run and the filler, once the journal's write has failed (policy `block`)."""
    started = await client.call(
        "execute",
        argv=["sh", "-c", WAIT_THEN_WRITE],
        env={"GO": str(go), "WRITE": WRITE},
        durable=True,
    )
    run = started["run"]
    filler = fill(disk)
    go.touch()  # noqa: ASYNC240 - a marker on a local file system, at once
    fault = await wait_notification(client, "process.journal_error", run)
    assert fault["policy"] == "block"
    await wait_until(lambda: proc_stat(started["pid"]) is None, bound=30)
    return run, filler


async def test_block_policy_keeps_retrying_after_the_runs_processes_end(tmp_path: Path) -> None:
    """The run has exited (its processes are gone) while its last output and its completion
    cannot be written: the journal holds them and writes them once the disk has room."""
    go = tmp_path / "go"  # outside the full disk
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(120):
        state = str(disk / "state")
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run, filler = await exit_onto_a_full_disk(client, disk, go)
            status = await status_until(
                client,
                run,
                lambda s: (
                    s["state"] in ("ending", "completed")
                    and (s["journal"]["blocked"] or s["journal"]["gap_from_seq"] is not None)
                ),
            )
            assert status["journal"]["gap_from_seq"] is None  # nothing given up
            assert status["journal"]["blocked"] is True  # it waits for the disk
            filler.unlink()  # room again: the retry writes everything
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "exited"
            assert bytes(record.stdout) == b"a" * 200000
            assert client.gaps == []
            status = await client.call("status", run=run)
            assert status["journal"]["gap_from_seq"] is None
            assert status["journal"]["error"] is None  # recovered
            assert status["journal"]["faults"] == 1
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run=run)
            assert status["outcome"] == "exited"
            await client.attach(run, 0)
            replayed = await client.wait_completed(run)
            assert bytes(replayed.stdout) == b"a" * 200000
            assert client.gaps == []


async def test_a_cancel_gives_up_the_wait_of_a_run_that_exited(tmp_path: Path) -> None:
    """The run has exited while its last output cannot be written (policy `block`): a CANCEL
    cannot end it again (-32005: it has completed), but it gives the journal's wait up — the
    output that did not fit is a gap, and the completion is recorded with the reserve."""
    go = tmp_path / "go"
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(120):
        state = str(disk / "state")
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run, _ = await exit_onto_a_full_disk(client, disk, go)
            await status_until(client, run, lambda s: s["journal"]["blocked"] is True)
            error = await client.call_error("control", type="CANCEL", run=run)
            assert error.code == -32005, error
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "exited"  # how it ended, not the CANCEL
            assert len(record.stdout) < 200000
            assert client.gaps, "the output given up is said"
            assert all(gap["reason"].startswith("not recorded: ") for gap in client.gaps)
            status = await client.call("status", run=run)
            assert status["journal"]["blocked"] is False
            assert status["journal"]["gap_from_seq"] is not None
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run=run)
            assert status["outcome"] == "exited"
