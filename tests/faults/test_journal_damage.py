"""Real damage in real journal files: flipped bytes, zeroed and removed ranges, cut tails.

Observed on main with one flipped byte: a reader of the completed run replayed half of it and
stopped silently (a CRC failure read as "no more records"); recovery cut every valid record
after the bad one and completed a run that had exited 0 as lost; on a live journal the
reader's wait returned without a checkpoint and the event loop spun.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from faults_journal_testing import journal_meta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Output,
    RunState,
    SequencedEvent,
    StateEvent,
)
from cc_executor.supervision.journal import (
    Gap,
    Journal,
    JournalConfig,
    JournalFault,
    Replayed,
)
from cc_executor.supervision.journal_codec import DAMAGED, UNBOUND, encode_entry
from cc_executor.supervision.outcome import Exited, Lost

CONFIG = JournalConfig(fsync="never", batch_bytes=0)


def events(sizes: list[int]) -> list[SequencedEvent]:
    """Output of the given sizes (distinct bytes per seq), a pause, and an exit-0 completion."""
    made: list[SequencedEvent] = [
        Output(seq=i + 1, stream="stdout", data=bytes([65 + i % 26]) * size)
        for i, size in enumerate(sizes)
    ]
    made.append(StateEvent(seq=len(made) + 1, state=RunState.PAUSED))
    made.append(
        CompletedEvent(
            seq=len(made) + 1, completed=Completed(Exited(0), sum(sizes), 0, duration=1.0)
        )
    )
    return made


async def write(path: Path, written: list[SequencedEvent]) -> tuple[Journal, list[int]]:
    """A journal holding `written`; and the file offset where each event's record starts."""
    journal = Journal.create(str(path), journal_meta("damaged"), CONFIG)
    offsets = []
    for event in written:
        offsets.append(journal.committed)
        await journal.deliver(event)
    return journal, offsets


def drain(journal: Journal, from_seq: int = 0) -> list[Replayed]:
    """Everything a cursor yields, read without waiting; bounded, so a stall fails the test."""
    entries: list[Replayed] = []
    with journal.cursor(from_seq) as cursor:
        for _ in range(10_000):
            entry = cursor.read_nowait()
            if entry is None:
                break
            entries.append(entry)
        assert cursor.read_nowait() is None
    return entries


def damage(path: Path, how: str, offset: int, length: int) -> None:
    data = bytearray(path.read_bytes())
    end = min(len(data), offset + length)
    if how == "flip":
        data[offset] ^= 0xFF
    elif how == "zero":
        data[offset:end] = bytes(end - offset)
    elif how == "remove":
        del data[offset:end]
    else:
        del data[offset:]
    path.write_bytes(bytes(data))


async def test_a_flipped_byte_mid_file_is_reported_and_reading_goes_on(tmp_path: Path) -> None:
    written = events([100, 100, 100, 100])
    journal, offsets = await write(tmp_path / "j", written)
    await journal.close()
    damage(tmp_path / "j", "flip", offsets[1] + 20, 1)  # inside the payload of seq 2
    entries = drain(journal)
    assert entries[0] == written[0]
    gap = entries[1]
    assert isinstance(gap, Gap)
    assert (gap.seq, gap.until_seq, gap.reason) == (2, 2, DAMAGED)
    assert (gap.offset, gap.length) == (offsets[1], offsets[2] - offsets[1])
    assert entries[2:] == written[2:]  # everything after the damage, the completion last


async def test_recovery_keeps_the_records_after_damage_and_never_recompletes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j"
    written = events([50] * 6)
    journal, offsets = await write(path, written)
    await journal.close()
    size = path.stat().st_size
    damage(path, "flip", offsets[2] + 3, 1)  # the CRC field of seq 3's record
    reopened = await trio.to_thread.run_sync(Journal.open, str(path), CONFIG)
    assert reopened is not None
    assert reopened.completed == written[-1]  # exited 0: completed, not lost
    assert path.stat().st_size == size  # nothing valid was cut
    assert reopened.truncated_bytes == 0
    assert [(d.first_seq, d.last_seq) for d in reopened.damaged] == [(3, 3)]
    assert [e for e in drain(reopened) if not isinstance(e, Gap)] == [
        e for e in written if e.seq != 3
    ]


async def test_a_damaged_whole_last_record_is_kept_aside_before_it_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "j"
    written = events([50, 50])
    journal, offsets = await write(path, written)
    await journal.close()
    original = path.read_bytes()
    damage(path, "flip", offsets[-1] + 12, 1)  # the completion record
    reopened = await trio.to_thread.run_sync(Journal.open, str(path), CONFIG)
    assert reopened is not None
    assert reopened.completed is None
    assert reopened.kept_aside is not None
    kept = await trio.Path(reopened.kept_aside).read_bytes()
    assert kept[: offsets[-1]] == original[: offsets[-1]]
    assert path.stat().st_size == offsets[-1]
    await reopened.append_completion(
        CompletedEvent(written[-1].seq, Completed(Lost("recovered"), 100, 0, 1.0))
    )


async def test_a_live_journal_with_damage_never_spins_and_goes_on(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "j"
    written = events([80] * 5)
    journal, offsets = await write(path, written[:3])
    damage(path, "flip", offsets[1] + 30, 1)  # under the live writer
    seen: list[Replayed] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                with journal.cursor(0) as cursor:
                    while (entry := await cursor.read()) is not None:
                        seen.append(entry)

            nursery.start_soon(follow)
            # A reader that spun would never let this task run again.
            await trio.testing.wait_all_tasks_blocked()
            assert [type(e) for e in seen] == [Output, Gap, Output]
            for event in written[3:]:
                await journal.deliver(event)
                await trio.testing.wait_all_tasks_blocked()
            await journal.close()
    assert seen[0] == written[0]
    assert isinstance(seen[1], Gap)
    assert seen[1].reason == DAMAGED
    assert seen[2:] == written[2:]


@st.composite
def damaged_journals(draw: st.DrawFn) -> tuple[list[int], str, float, int, bool]:
    sizes = draw(st.lists(st.integers(0, 300), min_size=1, max_size=12))
    how = draw(st.sampled_from(["flip", "zero", "remove", "cut"]))
    where = draw(st.floats(0.0, 1.0, exclude_max=True))
    length = draw(st.integers(1, 400))
    live = draw(st.booleans())
    return sizes, how, where, length, live


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=damaged_journals())
def test_random_damage_reads_explicitly_and_loses_nothing_before_it(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[list[int], str, float, int, bool]
) -> None:
    """Whatever the damage, on a completed or a live journal: reading ends explicitly (on the
    completion, after a Gap where events are missing), yields no byte that was not written,
    and recovery keeps every record that lies before the damage."""
    sizes, how, where, length, live = case
    directory = tmp_path_factory.mktemp("damage")
    path = directory / "j"
    written = events(sizes)
    by_seq = {e.seq: e for e in written}

    async def main() -> None:
        journal, offsets = await write(path, written[: len(written) - 1] if live else written)
        head = offsets[0]
        offset = head + int(where * (journal.committed - head))
        damage(path, how, offset, length)
        if live:  # damaged under the writer; the run then completes
            await journal.deliver(written[-1])
            await journal.close()
            entries = drain(journal)
            assert entries[-1] == written[-1]  # from the file or from memory
        else:
            await journal.close()
            entries = drain(journal)
            reopened = await trio.to_thread.run_sync(Journal.open, str(path), CONFIG)
            assert reopened is not None
            if reopened.completed is None:  # what recovery does: complete it as lost
                lost = CompletedEvent(reopened.last_seq + 1, Completed(Lost("lost"), 0, 0, 1.0))
                await reopened.append_completion(lost)
            recovered = drain(reopened)
            assert isinstance(recovered[-1], CompletedEvent)
            intact = [e for e, at in zip(written, offsets, strict=True) if at + size(e) <= offset]
            assert [e for e in recovered if e in intact] == intact
            check(recovered)
        check(entries)

    def size(event: SequencedEvent) -> int:
        return len(encode_entry(event, UNBOUND))  # a length: the same with any seed

    def check(entries: list[Replayed]) -> None:
        seq = 0
        for entry in entries:
            if isinstance(entry, Gap):
                assert entry.seq == seq + 1
                seq = entry.seq - 1 if entry.until_seq is None else entry.until_seq
                continue
            assert not isinstance(entry, JournalFault)
            assert entry.seq > seq
            if entry.seq in by_seq and not isinstance(entry, CompletedEvent):
                assert entry == by_seq[entry.seq]  # never a byte that was not written
            seq = entry.seq
        assert entries, "reading ended without a word"
        assert isinstance(entries[-1], CompletedEvent | Gap)

    trio.run(main)
