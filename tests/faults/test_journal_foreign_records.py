"""Valid record bytes that are not the run's, found by a reader after damage (real files).

Observed on main: run B's output held run A's journal (B ran ``cat`` on it); one flipped byte
in the header of B's record carrying those bytes, and readers took A's records inside B's
payload for B's own: B replayed A's lines and A's completion, and B's own completion never
came.  A reader now never yields a record the journal has not numbered (above its last seq),
nor anything at or after its completion but that completion: it ends on the run's own.  And
records are bound to their journal (format v2: each CRC is seeded with its journal's run id),
so A's records fail their CRC in B whatever their seqs: none of them is ever taken for B's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faults_journal_testing import flip_byte, journal_meta, read_all

from cc_executor.supervision.events import Completed, CompletedEvent, Output, SequencedEvent
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, Replayed
from cc_executor.supervision.journal_codec import (
    DAMAGED,
    MAGIC,
    MAGIC_V1,
    UNBOUND,
    encode_entry,
    encode_meta,
    seed_of,
)
from cc_executor.supervision.outcome import Exited

CONFIG = JournalConfig(fsync="never", batch_bytes=0)


async def journal_of(path: Path, events: list[SequencedEvent]) -> tuple[Journal, list[int]]:
    journal = Journal.create(str(path), journal_meta(path.stem), CONFIG)
    offsets = []
    for event in events:
        offsets.append(journal.committed)
        await journal.deliver(event)
    return journal, offsets


def done(seq: int, code: int) -> CompletedEvent:
    return CompletedEvent(seq=seq, completed=Completed(Exited(code), 0, 0, duration=1.0))


A_EVENTS: list[SequencedEvent] = [
    *(Output(seq=i, stream="stdout", data=f"SECRET-A {i}\n".encode()) for i in range(1, 61)),
    done(61, 3),
]


async def a_journal(tmp_path: Path, version: int) -> bytes:
    """Run A's finished journal (60 lines, exit 3): written by the journal (v2), or as a daemon
    before v2 wrote it (v1: built by hand, its records not bound to any journal)."""
    path = tmp_path / "a.journal"
    if version == 1:
        records = (encode_entry(event, UNBOUND) for event in A_EVENTS)
        return MAGIC_V1 + encode_meta(journal_meta("a"), UNBOUND) + b"".join(records)
    a, _ = await journal_of(path, A_EVENTS)
    await a.close()
    return path.read_bytes()


async def b_carrying_a(tmp_path: Path, version: int = 2) -> tuple[Journal, list[SequencedEvent]]:
    """Run B's finished journal: its record carrying A's journal (of `version`: B ran ``cat``
    on it) has a flipped CRC byte, under the live writer; B then completes (exit 0)."""
    b_events: list[SequencedEvent] = [
        Output(seq=1, stream="stdout", data=b"B-start\n"),
        Output(seq=2, stream="stdout", data=await a_journal(tmp_path, version)),
        Output(seq=3, stream="stdout", data=b"B-done\n"),
    ]
    b, offsets = await journal_of(tmp_path / "b.journal", b_events)
    flip_byte(tmp_path / "b.journal", offsets[1] + 4)  # the CRC of the record carrying A
    await b.deliver(done(4, 0))
    await b.close()
    return b, b_events


def none_of_a(entries: list[Replayed]) -> bool:
    return not any(isinstance(e, Output) and b"SECRET-A" in e.data for e in entries)


async def test_a_reader_ends_on_the_runs_own_completion_and_never_past_its_seqs(
    tmp_path: Path,
) -> None:
    b, b_events = await b_carrying_a(tmp_path)
    entries = read_all(b)
    assert entries[0] == b_events[0]
    assert entries[-1] == done(4, 0)  # B's own completion, not A's exit 3
    assert all(e.seq <= 4 for e in entries if not isinstance(e, Gap))  # none of A's 5..61


@pytest.mark.parametrize("version", [2, 1])
async def test_records_inside_a_payload_are_never_taken_for_the_runs_own(
    tmp_path: Path, version: int
) -> None:
    b, b_events = await b_carrying_a(tmp_path, version)
    entries = read_all(b)
    assert none_of_a(entries)
    gaps = [e for e in entries if isinstance(e, Gap)]
    assert gaps
    assert (gaps[0].reason, gaps[0].seq) == (DAMAGED, 2)
    assert entries == [b_events[0], gaps[0], b_events[2], done(4, 0)]


@pytest.mark.parametrize("version", [2, 1])
async def test_recovery_never_takes_records_inside_a_payload_for_the_runs_own(
    tmp_path: Path, version: int
) -> None:
    """What a restart reads (Journal.open): B's own seqs and completion, A's bytes damage."""
    _, b_events = await b_carrying_a(tmp_path, version)
    reopened = Journal.open(str(tmp_path / "b.journal"), CONFIG)
    assert reopened is not None
    assert (reopened.completed, reopened.last_seq) == (done(4, 0), 4)
    assert [(d.first_seq, d.last_seq) for d in reopened.damaged] == [(2, 2)]
    entries = read_all(reopened)
    assert none_of_a(entries)
    assert [e for e in entries if not isinstance(e, Gap)] == [b_events[0], b_events[2], done(4, 0)]


@pytest.mark.parametrize("version", [2, 1])
async def test_another_journals_blocks_after_a_cut_are_never_taken_for_the_runs_own(
    tmp_path: Path, version: int
) -> None:
    """B died while writing its completion (torn), and what follows in its file is blocks of
    A's journal (stale blocks a file system handed on): none of A's records, seqs 4 to 61 and
    its completion, is B's.  B reads as its three lines and a damaged tail, cut (kept aside),
    with no completion: recovery completes it as lost."""
    b_events: list[SequencedEvent] = [
        Output(seq=i, stream="stdout", data=f"B {i}\n".encode()) for i in range(1, 4)
    ]
    b, _ = await journal_of(tmp_path / "b.journal", b_events)
    await b.close()
    path = tmp_path / "b.journal"
    own = path.stat().st_size
    torn = encode_entry(done(4, 0), seed_of("b"))[:-5]
    a_bytes = await a_journal(tmp_path, version)
    path.write_bytes(path.read_bytes() + torn + a_bytes[len(MAGIC) :])
    reopened = Journal.open(str(path), CONFIG)
    assert reopened is not None
    assert (reopened.completed, reopened.last_seq, reopened.committed) == (None, 3, own)
    assert path.stat().st_size == own
    assert reopened.kept_aside is not None
    assert [(d.offset, d.first_seq, d.last_seq) for d in reopened.damaged] == [(own, 4, None)]
    entries = read_all(reopened)
    assert none_of_a(entries)
    assert entries[:3] == b_events


async def test_a_headless_journal_never_takes_another_v2_journals_records(
    tmp_path: Path,
) -> None:
    """B's magic and META both damaged: its version cannot be told, so records are checked
    with B's seed or none (v1); A's v2 records, bound to A, are still never B's."""
    _, b_events = await b_carrying_a(tmp_path, 2)
    path = tmp_path / "b.journal"
    data = bytearray(path.read_bytes())
    data[: len(MAGIC) + 12] = bytes(len(MAGIC) + 12)  # the magic and META's frame and head
    path.write_bytes(bytes(data))
    reopened = Journal.open(str(path), CONFIG)
    assert reopened is not None
    assert reopened.meta is None
    assert reopened.seeds == (seed_of("b"), UNBOUND)
    assert reopened.completed == done(4, 0)
    entries = read_all(reopened)
    assert none_of_a(entries)
    assert [e for e in entries if not isinstance(e, Gap)] == [b_events[0], b_events[2], done(4, 0)]
