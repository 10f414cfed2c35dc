"""A journal's batch: the records queued for its next write, and that write.

An output's data is never copied into its record: the record's frame, kind, seq and stream
byte go in one small buffer, the data follows as its own (writev(2) joins them; the CRC runs
over both, from its journal's seed: journal_codec.py).  The CRC and frame of an output are
made when its batch is written (`write`): a big batch is framed and written in a worker
thread (the CRC and `writev` release the GIL), so the event loop sends to attached clients
meanwhile; the write is shielded, so it is never cut short, and happens whole or fails as one
write did inline.  Once a batch is written its index (`index_records`) lets a cursor that is
caught up take the entries from memory instead of reading back what was just written.

A write that stops short (a full disk takes part of it) is continued where it stopped: a
batch counts the bytes of it already in the file (`Batch.written`), the next write of it
frames the same records again and skips those bytes (`frame` is deterministic), and the
whole records among them can be taken out of it (`Batch.take_written`) to be committed.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import attrs
import trio

from cc_executor.supervision.events import CompletedEvent, Note, Output, StateEvent
from cc_executor.supervision.journal_codec import (
    _STREAMS,
    FRAME,
    HEAD,
    K_COMPLETED,
    K_GAP,
    K_NOTE,
    K_OUTPUT,
    K_REMOVED,
    K_STATE,
    Entry,
    Gap,
    Record,
    Removed,
    crc32,
)
from cc_executor.supervision.threads import in_thread, start_in_thread

if TYPE_CHECKING:
    import outcome

_IOV_MAX = os.sysconf("SC_IOV_MAX")  # the most buffers one writev(2) takes
THREAD_BYTES = 256 * 1024  # a batch this big is written in a worker thread (worth the hand-off)


@attrs.frozen
class OutputRecord:
    """An output's record before it is framed: its kind, seq and stream byte (`head`), its
    data, and the seed of its journal's CRCs; the frame (length, CRC) is made when it is
    written."""

    head: bytes
    data: bytes
    seed: int

    @classmethod
    def of(cls, output: Output, seed: int) -> OutputRecord:
        head = HEAD.pack(K_OUTPUT, output.seq) + bytes([_STREAMS.index(output.stream)])
        return cls(head, output.data, seed)

    def __len__(self) -> int:
        return FRAME.size + len(self.head) + len(self.data)


# A record framed already (not output: encode_entry with its journal's seed), or an output's.
Queued = bytes | OutputRecord


def frame(records: Sequence[Queued], skip: int = 0) -> list[bytes | memoryview]:
    """Every buffer of `records`, in order, each output's frame and CRC made now; without
    their first `skip` bytes (written already)."""
    buffers: list[bytes | memoryview] = []
    for record in records:
        if isinstance(record, OutputRecord):
            head, data = record.head, record.data
            crc = crc32(data, crc32(head, record.seed))
            buffers += (FRAME.pack(len(head) + len(data), crc) + head, data)
        else:
            buffers.append(record)
    if skip:
        for i, buffer in enumerate(buffers):
            if skip < len(buffer):
                return [memoryview(buffer)[skip:], *buffers[i + 1 :]]
            skip -= len(buffer)
        return []
    return buffers


def _write(fd: int, records: Sequence[Queued], skip: int = 0) -> int:
    return os.writev(fd, frame(records, skip))


async def write(fd: int, batch: Batch) -> int:
    """Write what of `batch` is not in the file yet (all but its first `written` bytes) to
    `fd` with one writev(2); the bytes written now.  A batch of THREAD_BYTES or more is
    framed and written in a worker thread, shielded from cancellation (as an inline write
    cannot be cancelled either); the caller must not change `batch` meanwhile.

    Raises:
        OSError: what writev(2) raised.
    """
    records, skip = tuple(batch.records), batch.written
    if batch.size < THREAD_BYTES:
        return _write(fd, records, skip)
    with trio.CancelScope(shield=True):
        written = await in_thread(_write, fd, records, skip)
    return written


class Behind:
    """The batch being written in a worker thread while its journal's pump goes on (at most
    one at a time): `over(batch, written)` is called in the event loop when the write is
    over, with the bytes written or the OSError raised."""

    def __init__(self, over: Callable[[Batch, int | OSError], None]) -> None:
        self._over = over
        self.batch: Batch | None = None
        self._done = trio.Event()

    @property
    def size(self) -> int:
        return 0 if self.batch is None else self.batch.size

    def start(self, fd: int, batch: Batch) -> None:
        """Start writing `batch` (not changed from now on) to `fd` (kept open until `wait`)."""
        assert self.batch is None, "one write at a time"
        assert not batch.written, "a batch written in part is finished inline"
        self.batch, self._done = batch, trio.Event()
        token = trio.lowlevel.current_trio_token()

        def report(result: outcome.Outcome[int | OSError]) -> None:  # in the worker thread
            with contextlib.suppress(trio.RunFinishedError):  # the daemon is gone already
                token.run_sync_soon(self._finish, batch, result)

        start_in_thread(partial(_try_write, fd, tuple(batch.records)), report)

    def _finish(self, batch: Batch, result: outcome.Outcome[int | OSError]) -> None:
        self.batch = None
        try:
            self._over(batch, result.unwrap())
        finally:
            self._done.set()

    async def wait(self) -> None:
        """Until no write is in progress (never cancelled: a write is not cut short)."""
        if self.batch is not None:
            with trio.CancelScope(shield=True):
                await self._done.wait()


def _try_write(fd: int, records: Sequence[Queued]) -> int | OSError:
    try:
        return _write(fd, records)
    except OSError as exc:
        return exc
    except Exception as exc:  # a bug: a failed write to its journal, not the event loop's end
        return OSError(errno.EIO, f"cannot write: {exc!r}")


def index_records(
    offset: int, records: list[Queued], entries: list[Entry]
) -> dict[int, tuple[Record, Entry]]:
    """Where each of `records` (written from `offset` on) starts, with its Record (no payload
    kept: the entry is what it holds) and its entry."""
    index: dict[int, tuple[Record, Entry]] = {}
    for record, entry in zip(records, entries, strict=True):
        end = offset + len(record)
        match entry:
            case Output(seq=seq):
                kind = K_OUTPUT
            case StateEvent(seq=seq):
                kind = K_STATE
            case CompletedEvent(seq=seq):
                kind = K_COMPLETED
            case Gap(seq=seq):
                kind = K_GAP
            case Removed(first=seq):
                kind = K_REMOVED
            case Note(seq=seq):
                kind = K_NOTE
        index[offset] = (Record(kind, seq, b"", offset, end), entry)
        offset = end
    return index


@attrs.define
class Batch:
    """Records queued for one write, with their entries, byte count and buffer count, and
    how many of its bytes are in the file already (`written`: a write that stopped short;
    they end the file, after its last committed record)."""

    records: list[Queued] = attrs.Factory(list)
    entries: list[Entry] = attrs.Factory(list)
    size: int = 0
    buffers: int = 0
    written: int = 0

    def __bool__(self) -> bool:
        return bool(self.records)

    def add(self, record: Queued, entry: Entry) -> None:
        self.records.append(record)
        self.entries.append(entry)
        self.size += len(record)
        self.buffers += _buffers(record)

    def full(self, batch_bytes: int) -> bool:
        """Whether to write the batch now: `batch_bytes` reached, or one output more would
        exceed the buffers one writev(2) takes."""
        return self.size >= batch_bytes or self.buffers + 2 > _IOV_MAX

    def unwritten(self) -> list[Entry]:
        """The entries whose records are not whole in the file yet."""
        end = 0
        for i, record in enumerate(self.records):
            end += len(record)
            if end > self.written:
                return self.entries[i:]
        return []

    def take_written(self) -> Batch:
        """Take out the records that are in the file whole (the first `written` bytes), as a
        batch of their own; what is left keeps the bytes written of its first record."""
        taken, end = 0, 0
        while taken < len(self.records) and end + len(self.records[taken]) <= self.written:
            end += len(self.records[taken])
            taken += 1
        done = Batch()
        for record, entry in zip(self.records[:taken], self.entries[:taken], strict=True):
            done.add(record, entry)
        done.written = end
        del self.records[:taken], self.entries[:taken]
        self.size -= end
        self.buffers -= done.buffers
        self.written -= end
        return done

    def drop(self, *, keep_last: bool, keep_notes: bool, budget: int | None = None) -> list[Entry]:
        """Drop the records that cannot be written; return the entries dropped.

        Output always goes; with `keep_notes` the rest stays queued (notes, state changes,
        gaps: what clients are told, a few small records), the newest first within `budget`
        bytes if one is given; the last record stays if asked (a completion).  Nothing of it
        may be in the file (`written` 0: the caller cuts a part written off first)."""
        assert not self.written, "cut what was written of it first"
        last = len(self.records) - 1 if keep_last else len(self.records)
        kept: set[int] = set(range(last, len(self.records)))
        room = budget
        for i in reversed(range(last) if keep_notes else ()):
            size = len(self.records[i])
            if isinstance(self.entries[i], Output) or (room is not None and size > room):
                continue
            kept.add(i)
            if room is not None:
                room -= size
        dropped = [entry for i, entry in enumerate(self.entries) if i not in kept]
        self.records = [record for i, record in enumerate(self.records) if i in kept]
        self.entries = [entry for i, entry in enumerate(self.entries) if i in kept]
        self.size = sum(map(len, self.records))
        self.buffers = sum(map(_buffers, self.records))
        return dropped


def _buffers(record: Queued) -> int:
    """How many buffers of a writev(2) `record` takes."""
    return 2 if isinstance(record, OutputRecord) else 1
