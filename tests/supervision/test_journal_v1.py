"""A journal of format v1 (magic ``CCXJRNL1``, records not bound: plain CRC-32s), as every
daemon before v2 wrote it, is read, recovered and replayed as before: its records in order,
damage stepped over, a completion appended to it in its own format (so it reads as v1
throughout, by this daemon and by an older one); retention rewrites it as v2.

The files are built by hand (the codec at seed UNBOUND), never by the writer: it writes v2.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from faults_journal_testing import flip_byte, read_all, write_v1_journal

from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Note,
    Output,
    RunState,
    SequencedEvent,
    StateEvent,
)
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, Meta, boot_id
from cc_executor.supervision.journal_codec import (
    DAMAGED,
    FRAME,
    MAGIC,
    MAGIC_V1,
    UNBOUND,
    encode_entry,
    encode_meta,
    seed_of,
)
from cc_executor.supervision.journal_retention import compact
from cc_executor.supervision.outcome import Exited, Lost

FAST = JournalConfig(fsync="never", batch_bytes=0)
META = Meta("old-1", 1, 1, ("true",), 1796000000.0, boot_id(), 1 << 30, "block", "local")
EVENTS: list[SequencedEvent] = [
    Output(seq=1, stream="stdout", data=b"one\n"),
    StateEvent(seq=2, state=RunState.PAUSED),
    StateEvent(seq=3, state=RunState.RUNNING),
    Note(seq=4, name="n", data=b"body"),
    Output(seq=5, stream="stderr", data=b"x" * 70_000),  # big: its data is read apart
    Output(seq=6, stream="stdout", data=b"six\n"),
]
DONE = CompletedEvent(seq=7, completed=Completed(Exited(0), 8, 70_000, duration=1.0))


def v1_file(path: Path, events: list[SequencedEvent]) -> list[int]:
    """Write a v1 journal of `events` at `path`; the offset of each record."""
    return write_v1_journal(path, META, events)


def unbound_records(data: bytes, start: int) -> list[int]:
    """The seq of every record from `start` on whose CRC is a plain CRC-32 (zlib's own)."""
    seqs, offset = [], start
    while offset < len(data):
        length, crc = FRAME.unpack_from(data, offset)
        body = data[offset + FRAME.size : offset + FRAME.size + length]
        assert zlib.crc32(body) == crc, f"the record at {offset} is not a v1 one"
        seqs.append(int.from_bytes(body[1:9], "little"))
        offset += FRAME.size + length
    return seqs


async def test_a_v1_journal_reads_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "old-1.journal"
    v1_file(path, [*EVENTS, DONE])
    journal = Journal.open(str(path), FAST)
    assert journal is not None
    assert (journal.meta, journal.completed, journal.last_seq) == (META, DONE, 7)
    assert (journal.damaged, journal.head_damage, journal.truncated_bytes) == ([], None, 0)
    assert journal.seeds == (UNBOUND,)
    assert read_all(journal) == [*EVENTS, DONE]
    with journal.cursor(4) as cursor:
        assert [cursor.read_nowait() for _ in range(3)] == [*EVENTS[4:], DONE]


@pytest.mark.parametrize("victim", [1, 4])  # a small record, the big output
async def test_damage_in_a_v1_journal_is_stepped_over(tmp_path: Path, victim: int) -> None:
    path = tmp_path / "old-1.journal"
    offsets = v1_file(path, [*EVENTS, DONE])
    flip_byte(path, offsets[victim] + FRAME.size + 3)  # in its seq: its CRC fails
    journal = Journal.open(str(path), FAST)
    assert journal is not None
    seq = EVENTS[victim].seq
    (damaged,) = journal.damaged
    assert (damaged.offset, damaged.first_seq, damaged.last_seq) == (offsets[victim], seq, seq)
    assert journal.completed == DONE
    entries = read_all(journal)
    assert [e for e in entries if isinstance(e, Gap)] == [
        Gap(seq, DAMAGED, until_seq=seq, offset=offsets[victim], length=damaged.length)
    ]
    assert [e for e in entries if not isinstance(e, Gap)] == [
        e for e in [*EVENTS, DONE] if e.seq != seq
    ]


async def test_a_v1_journal_is_recovered_in_its_own_format(tmp_path: Path) -> None:
    """A run that died with a v1 daemon, its last record torn: the cut tail's GAP and the
    completion are appended as v1 records, read back as such, and by zlib alone."""
    path = tmp_path / "old-1.journal"
    v1_file(path, EVENTS)
    path.write_bytes(path.read_bytes()[:-2])  # a torn last record
    journal = Journal.open(str(path), FAST)
    assert journal is not None
    assert journal.completed is None
    assert (journal.last_seq, journal.truncated_bytes) == (5, len(encode_entry(EVENTS[-1], 0)) - 2)
    lost = CompletedEvent(seq=7, completed=Completed(Lost("daemon restarted"), 4, 70_000, 0.0))
    await journal.append_completion(lost, Gap(6, DAMAGED))
    data = path.read_bytes()
    assert data.startswith(MAGIC_V1)
    assert unbound_records(data, len(MAGIC_V1)) == [0, 1, 2, 3, 4, 5, 6, 7]
    reopened = Journal.open(str(path), FAST)
    assert reopened is not None
    assert (reopened.completed, reopened.damaged) == (lost, [])
    assert read_all(reopened) == [*EVENTS[:5], Gap(6, DAMAGED), lost]


async def test_a_v1_journal_whose_magic_is_damaged_is_still_read_as_v1(tmp_path: Path) -> None:
    """Its META, whole, says which: it holds unseeded."""
    path = tmp_path / "old-1.journal"
    v1_file(path, [*EVENTS, DONE])
    flip_byte(path, 2)
    journal = Journal.open(str(path), FAST)
    assert journal is not None
    assert (journal.meta, journal.seeds, journal.head_damage) == (META, (UNBOUND,), None)
    assert read_all(journal) == [*EVENTS, DONE]


async def test_retention_rewrites_a_v1_journal_as_v2(tmp_path: Path) -> None:
    """The compacted file is bound to its journal; a reader opened before it reads the old
    v1 file whole, one opened after reads the new one."""
    path = tmp_path / "old-1.journal"
    v1_file(path, [*EVENTS, DONE])
    journal = Journal.open(str(path), FAST)
    assert journal is not None
    before = journal.cursor(0)
    await compact(journal)
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    assert data[len(MAGIC) :].startswith(encode_meta(META, seed_of("old-1")))
    assert journal.seeds == (seed_of("old-1"),)
    assert read_all(journal) == [Gap(1, "removed by retention", until_seq=6), DONE]
    with before:
        assert [before.read_nowait() for _ in range(7)] == [*EVENTS, DONE]
    reopened = Journal.open(str(path), FAST)
    assert reopened is not None
    assert (reopened.meta, reopened.completed, reopened.seeds) == (META, DONE, journal.seeds)
