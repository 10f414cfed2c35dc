"""The run journal: records round-trip, torn tails are cut, quotas hold, cursors follow live."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Note,
    Output,
    RunState,
    SequencedEvent,
    StateEvent,
)
from cc_executor.supervision.journal import (
    Cursor,
    Gap,
    Journal,
    JournalConfig,
    Meta,
    Replayed,
    boot_id,
)
from cc_executor.supervision.journal_codec import (
    FRAME,
    HEAD,
    MAGIC,
    UNBOUND,
    decode_meta,
    encode_meta,
)
from cc_executor.supervision.journal_reader import Reader
from cc_executor.supervision.journal_retention import compact
from cc_executor.supervision.leftovers import find_leftovers, kill_leftovers
from cc_executor.supervision.marker import RUN_ID_VAR
from cc_executor.supervision.outcome import Cancelled, Exited, Lost, Rung, Signalled, TimedOut

FAST = JournalConfig(fsync="never", batch_bytes=0)


def meta(quota: int = 1 << 30, policy: str = "block", run_id: str = "r1") -> Meta:
    return Meta(
        run_id=run_id,
        pid=4242,
        pgid=4242,
        argv=("seq", "1", "ünïcode arg"),
        started_wall=time.time(),
        boot_id=boot_id(),
        quota_bytes=quota,
        quota_policy="gap" if policy == "gap" else "block",
    )


def done(seq: int, outcome: object = None) -> CompletedEvent:
    return CompletedEvent(
        seq=seq,
        completed=Completed(
            outcome=Exited(0) if outcome is None else outcome,  # type: ignore[arg-type]
            stdout_bytes=3,
            stderr_bytes=1,
            duration=1.25,
        ),
    )


EVENTS: list[SequencedEvent] = [
    Output(seq=1, stream="stdout", data=b"a\n"),
    Output(seq=2, stream="stderr", data=b"\xff"),
    StateEvent(seq=3, state=RunState.PAUSED),
    StateEvent(seq=4, state=RunState.RUNNING),
    Output(seq=5, stream="stdout", data=b"b"),
    done(6),
]


async def write(path: Path, events: list[SequencedEvent], **kw: object) -> Journal:
    journal = Journal.create(str(path), meta(**kw), FAST)  # type: ignore[arg-type]
    for event in events:
        await journal.deliver(event)
    return journal


def read_all(journal: Journal, from_seq: int = 0) -> list[Replayed]:
    with journal.cursor(from_seq) as cursor:
        entries = []
        while (entry := cursor.read_nowait()) is not None:
            entries.append(entry)
        return entries


async def test_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = await write(path, EVENTS)
    await journal.close()
    assert read_all(journal) == EVENTS
    assert read_all(journal, 3) == EVENTS[3:]
    reopened = Journal.open(str(path), FAST)
    assert reopened is not None
    assert reopened.meta == journal.meta
    assert reopened.last_seq == 6
    assert reopened.completed == EVENTS[-1]
    assert (reopened.stdout_bytes, reopened.stderr_bytes) == (3, 1)
    assert reopened.truncated_bytes == 0


@pytest.mark.parametrize(
    "outcome",
    [
        Exited(3),
        Signalled(9),
        Cancelled(reason="by client", rung=Rung.SIGKILL, exit=Signalled(9)),
        TimedOut(kind="idle", rung=Rung.SIGTERM, exit=Exited(0)),
        Lost(reason="daemon restarted"),
    ],
)
async def test_every_outcome_round_trips(tmp_path: Path, outcome: object) -> None:
    journal = await write(tmp_path / "j", [done(1, outcome)])
    await journal.close()
    reopened = Journal.open(journal.path, FAST)
    assert reopened is not None
    assert reopened.completed == done(1, outcome)


async def test_a_torn_tail_is_truncated_never_misread(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = await write(path, EVENTS[:5])
    whole = journal.committed
    await journal.close()
    # A crash in the middle of appending the completion: half of its record is on disk.
    record_start = path.read_bytes()
    journal2 = await write(tmp_path / "k", EVENTS)
    await journal2.close()
    tail = (tmp_path / "k").read_bytes()[whole:]
    path.write_bytes(record_start + tail[: len(tail) // 2])
    reopened = Journal.open(str(path), FAST)
    assert reopened is not None
    assert reopened.truncated_bytes == len(tail) // 2
    assert reopened.last_seq == 5
    assert reopened.completed is None
    assert path.stat().st_size == whole
    # Still locked by us (no completion): nobody else may recover it at the same time.
    assert Journal.open(str(path), FAST) is None


async def test_a_recovered_journal_takes_its_completion_after_the_last_record(
    tmp_path: Path,
) -> None:
    journal = await write(tmp_path / "j", EVENTS[:5])
    fd = journal._fd  # a crash: the writer never closes, the kernel drops its descriptor
    journal._fd = None
    assert isinstance(fd, int)
    os.close(fd)
    recovered = Journal.open(journal.path, FAST)
    assert recovered is not None
    lost = done(6, Lost(reason="daemon restarted"))
    await recovered.append_completion(lost)
    reopened = Journal.open(journal.path, FAST)
    assert reopened is not None
    assert read_all(reopened) == [*EVENTS[:5], lost]


async def test_a_corrupt_last_record_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = await write(path, EVENTS)
    await journal.close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the CRC of the completion record no longer matches
    path.write_bytes(bytes(data))
    reopened = Journal.open(str(path), FAST)
    assert reopened is not None
    assert reopened.completed is None
    assert reopened.last_seq == 5
    assert reopened.truncated_bytes > 0


def cut_reads_a_prefix(directory: Path, events: list[SequencedEvent], cut: int, flip: bool) -> None:
    """A journal of `events` cut at any point (its last byte flipped or not) opens as a prefix
    of them (none when the META record itself was torn: then `head_damage` says so)."""

    async def main() -> None:
        full = await write(directory / "full", events)
        await full.close()
        data = bytearray((directory / "full").read_bytes())
        size = len(MAGIC) + 60 + cut % max(1, len(data) - len(MAGIC) - 60)
        data = data[:size]
        if flip and len(data) > 100:
            data[-1] ^= 0x55
        (directory / "cut").write_bytes(bytes(data))
        reopened = Journal.open(str(directory / "cut"), FAST)
        assert reopened is not None
        entries = read_all(reopened)
        if reopened.meta is None:  # the META record itself was torn: said so, nothing cut
            assert reopened.head_damage is not None
            assert reopened.committed == len(data)
            assert [type(e) for e in entries] == [Gap]  # what its bytes held is unknown
            entries = []
        assert entries == events[: len(entries)]
        await reopened.close()

    trio.run(main)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 10_000), flip=st.booleans())
def test_any_cut_reads_a_prefix(
    tmp_path_factory: pytest.TempPathFactory, cut: int, flip: bool
) -> None:
    cut_reads_a_prefix(tmp_path_factory.mktemp("cut"), EVENTS, cut, flip)


async def test_open_refuses_a_journal_a_live_writer_holds(tmp_path: Path) -> None:
    journal = await write(tmp_path / "j", EVENTS[:2])
    assert Journal.open(journal.path, FAST) is None
    await journal.close()
    assert Journal.open(journal.path, FAST) is not None


async def test_gap_policy_stops_recording_output_with_a_marker(tmp_path: Path) -> None:
    big = [Output(seq=i, stream="stdout", data=b"x" * 100) for i in range(1, 11)]
    events: list[SequencedEvent] = [*big, StateEvent(seq=11, state=RunState.PAUSED), done(12)]
    journal = await write(tmp_path / "j", events, quota=700, policy="gap")
    await journal.close()
    assert journal.committed < 700 + 200
    entries = read_all(journal)
    gap_at = next(i for i, e in enumerate(entries) if isinstance(e, Gap))
    assert all(isinstance(e, Output) for e in entries[:gap_at])
    assert entries[gap_at] == Gap(seq=gap_at + 1, reason="journal quota reached")
    assert entries[gap_at + 1 :] == events[-2:]
    # Attaching from inside the gap: the gap is announced from the first missing seq.
    assert read_all(journal, gap_at + 2)[0] == Gap(
        seq=gap_at + 3, reason="journal quota reached", until_seq=10
    )
    assert read_all(journal, 11) == [events[-1]]


async def test_a_live_journals_quota_gap_is_read_as_the_gap_before_anything_follows(
    tmp_path: Path,
) -> None:
    """A GAP record is numbered as the first event it did not record, one past what the
    journal has counted until the next event: a reader that gets to it first reads the
    quota's gap, not damage (seen in CI, 'journal damaged' for the quota's gap)."""
    big: list[SequencedEvent] = [
        Output(seq=i, stream="stdout", data=b"x" * 100) for i in range(1, 11)
    ]
    journal = await write(tmp_path / "j", big, quota=700, policy="gap")
    assert journal.gap is not None
    assert journal.last_seq == journal.gap.seq - 1  # the gap's own seq is not counted yet
    entries = read_all(journal)
    assert entries[-1] == Gap(seq=journal.gap.seq, reason="journal quota reached")
    assert all(isinstance(e, Output) for e in entries[:-1])
    await journal.close()


def blocked(journal: Journal) -> bool:
    return journal.blocked


async def test_block_policy_waits_until_unblocked(tmp_path: Path) -> None:
    probe = Journal.create(str(tmp_path / "h"), meta(), FAST)
    head = probe.committed
    await probe.close()
    journal = Journal.create(str(tmp_path / "j"), meta(quota=head + 150), FAST)
    with trio.fail_after(5):
        await journal.deliver(Output(seq=1, stream="stdout", data=b"x" * 100))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(journal.deliver, Output(seq=2, stream="stdout", data=b"y" * 300))
            await trio.testing.wait_all_tasks_blocked()
            assert blocked(journal)
            assert journal.last_seq == 1
            journal.unblock()
        assert not blocked(journal)
        assert journal.gap == Gap(seq=2, reason="journal quota reached; the run is ending")
        await journal.deliver(done(3))
    await journal.close()
    assert read_all(journal)[-1] == done(3)


async def test_cursor_follows_a_live_journal(tmp_path: Path) -> None:
    journal = Journal.create(str(tmp_path / "j"), meta(), FAST)
    received: list[Replayed] = []

    async def follow(cursor: Cursor) -> None:
        with cursor:
            while (entry := await cursor.read()) is not None:
                received.append(entry)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, journal.cursor(0))
            for event in EVENTS:
                await trio.testing.wait_all_tasks_blocked()
                await journal.deliver(event)
            await journal.close()
    assert received == EVENTS


async def test_compaction_keeps_meta_and_completion(tmp_path: Path) -> None:
    journal = await write(tmp_path / "j", EVENTS)
    await journal.close()
    old_reader = journal.cursor(0)
    await compact(journal)
    assert journal.removed is not None
    assert (journal.removed.first, journal.removed.last) == (1, 5)
    assert read_all(journal, 5) == [EVENTS[-1]]
    reopened = Journal.open(journal.path, FAST)
    assert reopened is not None
    assert reopened.removed == journal.removed
    assert reopened.completed == EVENTS[-1]
    # A reader opened before the compaction still reads the old file whole.
    with old_reader:
        assert [old_reader.read_nowait() for _ in EVENTS] == EVENTS


async def test_a_reader_past_everything_a_compaction_removed_reads_nothing_more(
    tmp_path: Path,
) -> None:
    """From the completion's seq on there is nothing to read, compacted or not: the removed
    range lies behind the reader, so no gap is announced for it (a gap "from 7", past the
    completion, followed by nothing used to leave the client waiting)."""
    journal = await write(tmp_path / "j", EVENTS)
    await journal.close()
    assert read_all(journal, 6) == []
    await compact(journal)
    assert read_all(journal, 6) == []
    reopened = Journal.open(journal.path, FAST)
    assert reopened is not None
    assert read_all(reopened, 6) == []
    with reopened.cursor(6) as cursor:
        assert await cursor.read() is None  # at its end at once, not waiting


def _flip_first(path: Path, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[raw.index(data)] ^= 0xFF
    path.write_bytes(bytes(raw))


async def test_damage_behind_the_reader_is_not_announced(tmp_path: Path) -> None:
    """A damaged record before `from_seq` is none of this reader's business: it reads what is
    after it and no gap (found with the REMOVED case above: the reason for a hole survived the
    records the reader had already seen)."""
    journal = await write(tmp_path / "j", EVENTS)
    await journal.close()
    _flip_first(Path(journal.path), b"a\n")  # the first output's data: its CRC fails
    reopened = Journal.open(journal.path, FAST)
    assert reopened is not None
    assert read_all(reopened, 4) == EVENTS[4:]
    assert read_all(reopened, 6) == []


def test_leftovers_are_found_by_marker_and_killed(run_id: object) -> None:
    rid = run_id()  # type: ignore[operator]
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, RUN_ID_VAR: rid},
        start_new_session=True,
    )
    try:
        started = time.time() - 5
        for _ in range(1000):  # the child may not have exec'd with its environment yet
            if process.pid in find_leftovers(rid, process.pid, started):
                break
            time.sleep(0.01)
        # Once each, though the passes after the SIGKILL may see it still dying.
        assert kill_leftovers(rid, process.pid, started) == [process.pid]
        assert process.wait(10) == -9
        assert find_leftovers(rid, process.pid, started) == set()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_meta_owner_is_optional_both_ways() -> None:
    """Journals written before owners existed decode with owner None; an owner round-trips,
    and a reader that does not know the field ignores it (fields are looked up by name)."""
    base = Meta(
        run_id="r",
        pid=1,
        pgid=1,
        argv=("true",),
        started_wall=1.0,
        boot_id="b",
        quota_bytes=10,
        quota_policy="gap",
    )
    for meta in (base, attrs.evolve(base, owner="alice")):
        record = encode_meta(meta, UNBOUND)
        assert (b"owner" in record) == (meta.owner is not None)
        payload = record[FRAME.size + HEAD.size :]
        assert decode_meta(payload) == meta


async def test_output_is_batched_into_one_write_and_flushed_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many small outputs cost one write(2); readers see none of them before it, all after;
    a state change or completion is written at once (and what was queued before it)."""
    journal = Journal.create(str(tmp_path / "j"), meta(), JournalConfig(fsync="never"))
    writes: list[int] = []
    real_writev = os.writev

    def counting_writev(fd: int, buffers: list[bytes]) -> int:
        writes.append(len(buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", counting_writev)
    small = [Output(seq=i, stream="stdout", data=b"line %d\n" % i) for i in range(1, 101)]
    head = journal.committed
    for event in small:
        await journal.deliver(event)
    assert journal.committed == head  # queued, not yet visible
    assert read_all(journal) == []
    await journal.flush()  # the pump's idle hook
    # One writev; an output record is two buffers (its head, then its data uncopied).
    assert writes == [200]
    assert read_all(journal) == small
    await journal.deliver(Output(seq=101, stream="stderr", data=b"x"))
    await journal.deliver(StateEvent(seq=102, state=RunState.PAUSED))  # written at once
    assert writes == [200, 3]
    await journal.close()


async def test_notes_round_trip_in_sequence_with_the_output(tmp_path: Path) -> None:
    path = tmp_path / "j"
    events: list[SequencedEvent] = [
        Output(seq=1, stream="stdout", data=b"a\n"),
        Note(seq=2, name="claude.state", data=b'{"state":"idle"}'),
        Note(seq=3, name="claude.permission_request", data=b"\x00\xff binary is fine"),
        done(4),
    ]
    journal = await write(path, events)
    await journal.close()
    assert read_all(journal) == events
    assert read_all(journal, 2) == events[2:]
    reopened = Journal.open(str(path), FAST)
    assert reopened is not None
    assert reopened.last_seq == 4
    assert read_all(reopened, 1) == events[1:]


async def test_a_caught_up_cursor_reads_the_last_batch_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a follower takes from memory is exactly what the file holds; a cursor behind the
    last batch reads the file, and a finished journal is read from the file only."""
    import cc_executor.supervision.journal_cursor as journal_cursor
    from cc_executor.supervision.journal_scan import read_entry as real_read_entry

    file_reads: list[int] = []

    def counting(reader: Reader, offset: int, limit: int) -> object:
        file_reads.append(offset)
        return real_read_entry(reader, offset, limit)

    monkeypatch.setattr(journal_cursor, "read_entry", counting)
    journal = Journal.create(str(tmp_path / "j"), meta(), JournalConfig(fsync="never"))
    first = [Output(seq=i, stream="stdout", data=b"first %d\n" % i) for i in range(1, 4)]
    second = [Output(seq=i, stream="stderr", data=b"second %d\n" % i) for i in range(4, 7)]
    with journal.cursor(0) as follower:
        for event in first:
            await journal.deliver(event)
        await journal.flush()
        assert [follower.read_nowait() for _ in first] == first
        assert file_reads == []  # the batch it was waiting for, from memory
        for event in second:
            await journal.deliver(event)
        await journal.flush()
        with journal.cursor(0) as late:
            assert [late.read_nowait() for _ in first + second] == first + second
        assert len(file_reads) == len(first)  # the batch before the last: from the file
        assert [follower.read_nowait() for _ in second] == second
        assert len(file_reads) == len(first)
    await journal.deliver(done(7))
    await journal.close()
    file_reads.clear()
    assert read_all(journal) == [*first, *second, done(7)]
    assert len(file_reads) == 7  # finished: the file only


NOTED: list[SequencedEvent] = [
    Output(seq=1, stream="stdout", data=b'{"type":"system"}\n'),
    Note(seq=2, name="claude.turn_started", data=b'{"turn":1,"messages":["m-1"]}'),
    Note(seq=3, name="claude.permission_request", data=b'{"request":"q","input":{}}'),
    Output(seq=4, stream="stdout", data=b'{"type":"result"}\n'),
    Note(seq=5, name="claude.turn_ended", data=b'{"turn":1}'),
    done(6),
]


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 10_000), flip=st.booleans())
def test_any_cut_of_a_journal_with_notes_reads_a_prefix(
    tmp_path_factory: pytest.TempPathFactory, cut: int, flip: bool
) -> None:
    cut_reads_a_prefix(tmp_path_factory.mktemp("cut"), NOTED, cut, flip)


async def test_a_damaged_note_is_a_gap_and_the_records_after_it_are_found(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j"
    journal = await write(path, NOTED)
    await journal.close()
    data = bytearray(path.read_bytes())
    at = data.index(b"permission_request")
    data[at] ^= 0xFF  # inside the NOTE at seq 3: its CRC fails
    path.write_bytes(bytes(data))
    reopened = Journal.open(str(path), FAST)
    assert reopened is not None
    entries = read_all(reopened)
    assert entries[:2] == NOTED[:2]
    gap = entries[2]
    assert isinstance(gap, Gap)
    assert gap.seq == 3
    assert entries[3:] == NOTED[3:]  # found again after the damage, the completion last
