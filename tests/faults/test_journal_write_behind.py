"""Writes behind the pump (a full batch written in a worker thread while the next one fills):
a real full disk under them, and cancellation while one is on its way, lose and reorder
nothing, and faults behave as for a write made inline."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from ccx_testing import wait_until
from faults_journal_testing import journal_meta, read_all, small_tmpfs

from cc_executor.supervision.events import Completed, CompletedEvent, Output
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, JournalFault, Replayed
from cc_executor.supervision.journal_batch import THREAD_BYTES
from cc_executor.supervision.outcome import Exited

CHUNK = 64 * 1024
BATCH = 2 * THREAD_BYTES  # every full batch goes behind


def output(seq: int) -> Output:
    return Output(seq=seq, stream="stdout", data=bytes([seq % 251]) * CHUNK)


def completion(seq: int) -> CompletedEvent:
    done = Completed(outcome=Exited(0), stdout_bytes=0, stderr_bytes=0, duration=1.0)
    return CompletedEvent(seq=seq, completed=done)


def check_prefix_gap_completion(entries: list[Replayed], last: int) -> int:
    """Outputs 1..k exactly, then one gap from k+1 naming the full disk, then the completion
    (after the fault's announcement); returns k."""
    outputs = [e for e in entries if isinstance(e, Output)]
    k = len(outputs)
    assert outputs == [output(seq) for seq in range(1, k + 1)]
    gaps = [e for e in entries if isinstance(e, Gap)]
    assert len(gaps) == 1
    assert gaps[0].seq == k + 1
    assert "No space left on device" in gaps[0].reason
    faults = [e for e in entries if isinstance(e, JournalFault)]
    assert len(faults) == 1
    assert entries[-1] == completion(last)
    return k


@pytest.mark.parametrize("policy", ["cancel", "block"])
async def test_a_full_disk_under_a_write_behind(tmp_path: Path, policy: str) -> None:
    count = 40  # 2.5 MiB of output on a 1 MiB disk
    with small_tmpfs(tmp_path / "disk", "1m") as disk, trio.fail_after(60):
        config = JournalConfig(
            fsync="never",
            batch_bytes=BATCH,
            error_policy="cancel" if policy == "cancel" else "block",
            completion_reserve_bytes=16 * 1024,
        )
        journal = Journal.create(str(disk / "j"), journal_meta("r1"), config)

        async def pump() -> None:
            for seq in range(1, count + 1):
                await journal.deliver(output(seq))
            await journal.deliver(completion(count + 1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            if policy == "block":  # the pump waits for the disk until the run ends
                fault = await journal.wait_faulted()
                assert fault.policy == "block"
                await wait_until(lambda: journal.blocked, bound=30)
                journal.unblock()
        await journal.close()
        assert journal.fault_count == 1
        k = check_prefix_gap_completion(read_all(journal), count + 1)
        assert 0 < k < count
        assert journal.gap is not None
        assert journal.gap.seq == k + 1
        reopened = Journal.open(journal.path, config)
        assert reopened is not None
        assert reopened.completed == completion(count + 1)
        assert reopened.damaged == []
        assert reopened.truncated_bytes == 0


async def test_block_policy_loses_nothing_once_the_disk_has_room_again(tmp_path: Path) -> None:
    count = 40  # 2.5 MiB of output; the disk has about 1.5 MiB free until the filler goes
    with small_tmpfs(tmp_path / "disk", "4m") as disk, trio.fail_after(60):
        filler = disk / "filler"
        filler.write_bytes(bytes(2_500_000))
        config = JournalConfig(fsync="never", batch_bytes=BATCH, error_policy="block")
        journal = Journal.create(str(disk / "j"), journal_meta("r1"), config)

        async def pump() -> None:
            for seq in range(1, count + 1):
                await journal.deliver(output(seq))
            await journal.deliver(completion(count + 1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            await journal.wait_faulted()
            await wait_until(lambda: journal.blocked, bound=30)
            filler.unlink()  # room again: the retry writes what was behind, then the rest
        await journal.close()
        entries = read_all(journal)
        assert [e for e in entries if not isinstance(e, JournalFault)] == [
            *map(output, range(1, count + 1)),
            completion(count + 1),
        ]
        assert journal.fault_count == 1
        assert journal.fault is None  # recovered
        assert journal.gap is None


async def test_cancelled_while_a_write_is_behind_nothing_is_lost(tmp_path: Path) -> None:
    config = JournalConfig(fsync="never", batch_bytes=BATCH)
    journal = Journal.create(str(tmp_path / "j"), journal_meta("r1"), config)
    delivered = 0
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            for seq in range(1, 1000):
                await journal.deliver(output(seq))
                delivered = seq
                if journal._behind.batch is not None:  # a write is on its way: cancel now
                    scope.cancel()
                await trio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        await journal.deliver(completion(delivered + 1))
        await journal.close()
    assert read_all(journal) == [*map(output, range(1, delivered + 1)), completion(delivered + 1)]


async def test_a_follower_keeps_up_with_writes_behind(tmp_path: Path) -> None:
    config = JournalConfig(fsync="never", batch_bytes=BATCH)
    journal = Journal.create(str(tmp_path / "j"), journal_meta("r1"), config)
    seen: list[Replayed] = []

    async def follow() -> None:
        with journal.cursor(0) as cursor:
            while (entry := await cursor.read()) is not None:
                seen.append(entry)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            for seq in range(1, 101):
                await journal.deliver(output(seq))
                await trio.lowlevel.checkpoint()
            await journal.deliver(completion(101))
            await journal.close()
    assert seen == [*map(output, range(1, 101)), completion(101)]
