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

from faults_journal_testing import flip_byte, journal_meta, read_all

from cc_executor.supervision.events import Completed, CompletedEvent, Output, SequencedEvent
from cc_executor.supervision.journal import Gap, Journal, JournalConfig
from cc_executor.supervision.journal_codec import DAMAGED
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


async def b_carrying_a(tmp_path: Path) -> tuple[Journal, list[SequencedEvent]]:
    """Run B's finished journal: its record carrying A's journal (B ran ``cat`` on it) has a
    flipped CRC byte, under the live writer; B then completes (exit 0; A exited 3)."""
    a_events: list[SequencedEvent] = [
        Output(seq=i, stream="stdout", data=f"SECRET-A {i}\n".encode()) for i in range(1, 61)
    ]
    a, _ = await journal_of(tmp_path / "a.journal", [*a_events, done(61, 3)])
    await a.close()
    a_bytes = (tmp_path / "a.journal").read_bytes()
    b_events: list[SequencedEvent] = [
        Output(seq=1, stream="stdout", data=b"B-start\n"),
        Output(seq=2, stream="stdout", data=a_bytes),
        Output(seq=3, stream="stdout", data=b"B-done\n"),
    ]
    b, offsets = await journal_of(tmp_path / "b.journal", b_events)
    flip_byte(tmp_path / "b.journal", offsets[1] + 4)  # the CRC of the record carrying A
    await b.deliver(done(4, 0))
    await b.close()
    return b, b_events


async def test_a_reader_ends_on_the_runs_own_completion_and_never_past_its_seqs(
    tmp_path: Path,
) -> None:
    b, b_events = await b_carrying_a(tmp_path)
    entries = read_all(b)
    assert entries[0] == b_events[0]
    assert entries[-1] == done(4, 0)  # B's own completion, not A's exit 3
    assert all(e.seq <= 4 for e in entries if not isinstance(e, Gap))  # none of A's 5..61


async def test_records_inside_a_payload_are_never_taken_for_the_runs_own(tmp_path: Path) -> None:
    b, _ = await b_carrying_a(tmp_path)
    entries = read_all(b)
    assert not any(isinstance(e, Output) and b"SECRET-A" in e.data for e in entries)
    gaps = [e for e in entries if isinstance(e, Gap)]
    assert gaps
    assert (gaps[0].reason, gaps[0].seq) == (DAMAGED, 2)
