"""A live run's journal cut short under its writer (``truncate -s <smaller>``, really done).

Observed on main: the file is then shorter than the journal's committed size, and the writer
goes on appending at the file's real end.  A new attach's session closed with 1011
(`struct.error` in `Cursor.next_size`, which unpacked a short read), and sometimes the event
loop spun for ever: `resync`, after a record cut by the file's end, stepped its chunk forward
by the chunk's length less a record head, which near the end is nothing.

Every read here goes through a counted `Reader.read`: a reader that loops fails the test at
once (no timing), and `next_size` is asked before every read, as attach does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from faults_journal_testing import journal_meta

from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Output,
    SequencedEvent,
)
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, JournalFault, Replayed
from cc_executor.supervision.journal_codec import DAMAGED, MAGIC
from cc_executor.supervision.journal_reader import Reader
from cc_executor.supervision.outcome import Exited

CONFIG = JournalConfig(fsync="never", batch_bytes=0)
READS = 5_000  # far more reads than any of these files needs; a loop needs more


@pytest.fixture(autouse=True)
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if readers read without end (a spin), instead of hanging it."""
    calls = 0
    real = Reader.read

    def read(self: Reader, offset: int, length: int, limit: int) -> bytes:
        nonlocal calls
        calls += 1
        assert calls < READS, "a reader does not make progress (it loops)"
        return real(self, offset, length, limit)

    monkeypatch.setattr(Reader, "read", read)


def outputs(first: int, count: int, size: int = 100) -> list[SequencedEvent]:
    return [
        Output(seq=seq, stream="stdout", data=bytes([65 + seq % 26]) * size)
        for seq in range(first, first + count)
    ]


def completion(seq: int) -> CompletedEvent:
    return CompletedEvent(seq=seq, completed=Completed(Exited(0), 0, 0, duration=1.0))


def drain(journal: Journal) -> list[Replayed]:
    """What a new cursor reads without waiting, asking `next_size` first as attach does."""
    entries: list[Replayed] = []
    with journal.cursor(0) as cursor:
        while True:
            cursor.next_size()  # must never raise, whatever the file holds
            entry = cursor.read_nowait()
            if entry is None:
                return entries
            entries.append(entry)


def check(entries: list[Replayed], written: dict[int, SequencedEvent]) -> None:
    """Seqs only go up, a Gap says where they are missing, nothing yielded was not written."""
    seq = 0
    for entry in entries:
        assert not isinstance(entry, JournalFault)
        if isinstance(entry, Gap):
            assert entry.seq == seq + 1
            seq = entry.seq - 1 if entry.until_seq is None else entry.until_seq
            continue
        assert entry.seq > seq
        assert entry == written[entry.seq]
        seq = entry.seq


# Where the file is cut, from the offsets of the records written before: inside a record's
# body (the case that spun), inside its frame, at a record's start, inside the META, at the
# magic's end, and to nothing.
CUTS: dict[str, Callable[[list[int]], int]] = {
    "mid-record": lambda offsets: offsets[5] + 40,
    "record-near-end": lambda offsets: offsets[5] + 12,
    "mid-frame": lambda offsets: offsets[5] + 3,
    "at-a-record": lambda offsets: offsets[5],
    "in-meta": lambda offsets: offsets[0] - 5,
    "after-magic": lambda offsets: len(MAGIC),
    "empty": lambda offsets: 0,
}


@pytest.mark.parametrize("where", sorted(CUTS))
async def test_a_live_journal_cut_under_its_writer_reads_as_damage_and_ends(
    tmp_path: Path, where: str
) -> None:
    path = tmp_path / "run.journal"
    journal = Journal.create(str(path), journal_meta("cut"), CONFIG)
    before, after = outputs(1, 10), outputs(11, 10)
    done = completion(21)
    written = {e.seq: e for e in [*before, *after, done]}
    offsets = []
    for event in before:
        offsets.append(journal.committed)
        await journal.deliver(event)
    os.truncate(path, CUTS[where](offsets))  # real truncation, under the live writer
    assert path.stat().st_size < journal.committed

    check(drain(journal), written)  # a new attach now: no struct.error, no loop
    for event in after:  # the writer goes on, at the file's real end
        await journal.deliver(event)
        check(drain(journal), written)
    await journal.deliver(done)
    await journal.close()

    entries = drain(journal)
    check(entries, written)
    assert entries[-1] == done  # it ends on its completion
    gaps = [e for e in entries if isinstance(e, Gap)]
    assert gaps, "the seqs cut are reported missing"
    # A cut between records leaves whole records, only a jump in seqs; the journal wrote
    # them all, so that is damage too, never "not recorded".
    assert all(g.reason == DAMAGED for g in gaps)


async def test_an_attached_reader_follows_a_journal_cut_under_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A reader attached before the cut (the starting connection) waits and reads on: it is
    told of the damage and ends on the completion; the event loop stays free."""
    path = tmp_path / "run.journal"
    journal = Journal.create(str(path), journal_meta("cut"), CONFIG)
    before, after = outputs(1, 10), outputs(11, 10)
    done = completion(21)
    written = {e.seq: e for e in [*before, *after, done]}
    seen: list[Replayed] = []
    offsets = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                with journal.cursor(0) as cursor:
                    while True:
                        cursor.next_size()
                        entry = await cursor.read()
                        if entry is None:
                            return
                        seen.append(entry)

            nursery.start_soon(follow)
            for event in before[:5]:
                offsets.append(journal.committed)
                await journal.deliver(event)
                await trio.testing.wait_all_tasks_blocked()
            os.truncate(path, offsets[2] + 30)  # under the writer and the reader
            for event in [*before[5:], *after]:
                await journal.deliver(event)
                await trio.testing.wait_all_tasks_blocked()  # a spinning reader never lets go
            await journal.deliver(done)
            await journal.close()
    check(seen, written)
    assert seen[:2] == before[:2]
    assert seen[-1] == done
