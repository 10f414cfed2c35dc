"""Every journal read path on any file content and any length: it ends, it makes progress, and
what it cannot read is damage (a Gap), never an exception (struct.error) nor a loop.

The file may be shorter than the journal's committed size (cut under a live writer), so reads
come back short anywhere.  Reads are counted: a path that loops fails the example at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Output,
    RunState,
    StateEvent,
)
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, JournalError, Meta
from cc_executor.supervision.journal_codec import (
    MAGIC,
    MAGIC_V1,
    UNBOUND,
    Corrupt,
    Incomplete,
    Record,
    encode_entry,
    encode_meta,
    seed_of,
)
from cc_executor.supervision.journal_reader import Reader, read_record
from cc_executor.supervision.journal_scan import resync
from cc_executor.supervision.outcome import Exited

META = Meta("any", 1, 1, ("true",), 0.0, "", 1 << 20, "block")
SEED = seed_of("j")  # the files are j.journal
# Records bound to the file's journal, to another one, or to none (v1).
SEEDS = st.sampled_from([SEED, seed_of("other"), UNBOUND])
CONFIG = JournalConfig(fsync="never", batch_bytes=0)
READS = 20_000


class Budget:
    calls = 0


@pytest.fixture(autouse=True)
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Reader.read

    def read(self: Reader, offset: int, length: int, limit: int) -> bytes:
        Budget.calls += 1
        assert Budget.calls < READS, "a reader does not make progress (it loops)"
        return real(self, offset, length, limit)

    monkeypatch.setattr(Reader, "read", read)


def pieces() -> st.SearchStrategy[bytes]:
    """Bytes that look like a journal in places: records, META, magic, and noise."""
    record = st.builds(
        encode_entry,
        st.one_of(
            st.builds(
                Output,
                st.integers(0, 1 << 40),
                st.sampled_from(["stdout", "stderr"]),
                st.binary(max_size=64),
            ),
            st.builds(StateEvent, st.integers(0, 300), st.sampled_from(list(RunState))),
            st.builds(
                CompletedEvent,
                st.integers(0, 300),
                st.just(Completed(Exited(0), 0, 0, 1.0)),
            ),
            st.builds(Gap, st.integers(0, 300), st.text(max_size=8)),
        ),
        SEEDS,
    )
    return st.one_of(
        record,
        record.map(lambda r: r[: len(r) // 2]),  # a record cut
        st.sampled_from([MAGIC, MAGIC_V1]),
        st.builds(encode_meta, st.just(META), SEEDS),
        st.binary(max_size=40),
        st.binary(min_size=1, max_size=12).map(lambda b: b * 7),
    )


files = st.lists(pieces(), max_size=12).map(b"".join)
beyond = st.integers(0, 3000)  # how far the committed size goes past the file's end


def write(directory: Path, data: bytes) -> Path:
    path = directory / "j.journal"
    path.write_bytes(data)
    return path


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=files, more=beyond, start=st.integers(0, 4000), after=st.integers(0, 400))
def test_read_record_and_resync_end_on_any_bytes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, more: int, start: int, after: int
) -> None:
    Budget.calls = 0
    path = write(tmp_path_factory.mktemp("any"), data)
    limit = len(data) + more
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = Reader(fd, (SEED, UNBOUND))  # both: a file whose version is unknown
        found = resync(reader, start, limit, after)
        if found is not None:
            assert found[0].offset >= start
            assert found[0].end <= len(data)  # only bytes that are there
            assert found[0].seq > after
        offset = start
        while offset < limit:  # what a reader does: record by record, past damage
            read = read_record(reader, offset, limit)
            if isinstance(read, Record):
                assert read.end > offset
                offset = read.end
                continue
            assert isinstance(read, Incomplete | Corrupt)
            again = resync(reader, offset + 1, limit, 0)
            if again is None:
                break
            assert again[0].offset > offset
            offset = again[0].offset
    finally:
        os.close(fd)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=files, more=beyond, live=st.booleans(), from_seq=st.integers(0, 5))
def test_a_cursor_ends_on_any_bytes_and_any_committed_size(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, more: int, live: bool, from_seq: int
) -> None:
    """A cursor over a file shorter than committed (live) or of any content (finished)."""
    Budget.calls = 0
    path = write(tmp_path_factory.mktemp("any"), data)
    journal = Journal(str(path), META, CONFIG)
    journal.committed = len(data) + more
    journal.finished = not live
    with journal.cursor(from_seq) as cursor:
        seq = from_seq
        for _ in range(READS):
            cursor.next_size()  # a hint only: never raises
            entry = cursor.read_nowait()
            if entry is None:
                break
            if isinstance(entry, Gap):
                assert entry.seq == seq + 1
                seq = entry.seq - 1 if entry.until_seq is None else entry.until_seq
                continue
            assert entry.seq > seq
            seq = entry.seq
            if isinstance(entry, CompletedEvent):
                assert cursor.read_nowait() is None  # nothing after the completion
                break
        else:
            pytest.fail("the cursor never ran dry")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=files)
def test_open_reads_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    """Recovery's read of a whole file of any content ends, and then reads as committed."""
    Budget.calls = 0
    path = write(tmp_path_factory.mktemp("any"), data)
    try:
        journal = Journal.open(str(path), CONFIG)
    except JournalError:  # a magic of another format version: left alone
        return
    assert journal is not None
    assert path.stat().st_size == journal.committed
    with journal.cursor(0) as cursor:
        for _ in range(READS):
            if cursor.read_nowait() is None:
                break
    if journal._fd is not None:
        os.close(journal._fd)
