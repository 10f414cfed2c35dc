"""A journal's batch: the records queued for its next write, as the buffers to write them with.

An output's data is never copied into its record: the record's frame, kind, seq and stream
byte go in one small buffer, the data follows as its own (writev(2) joins them; the CRC runs
over both).  Once a batch is written its index (`index_records`) lets a cursor that is caught
up take the entries from memory instead of reading back what was just written.
"""

from __future__ import annotations

import zlib

import attrs

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
    encode_entry,
)


def encode_entry_parts(entry: Entry) -> tuple[bytes, ...]:
    """One record as the buffers to write it with: an output's data is not copied into its
    record (the frame, kind, seq and stream byte go first; the CRC runs over both)."""
    if isinstance(entry, Output):
        head = HEAD.pack(K_OUTPUT, entry.seq) + bytes([_STREAMS.index(entry.stream)])
        data = entry.data
        crc = zlib.crc32(data, zlib.crc32(head))
        return FRAME.pack(len(head) + len(data), crc) + head, data
    return (encode_entry(entry),)


def index_records(
    offset: int, records: list[tuple[bytes, ...]], entries: list[Entry]
) -> dict[int, tuple[Record, Entry]]:
    """Where each of `records` (written from `offset` on) starts, with its Record (no payload
    kept: the entry is what it holds) and its entry."""
    index: dict[int, tuple[Record, Entry]] = {}
    for parts, entry in zip(records, entries, strict=True):
        end = offset + sum(map(len, parts))
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
    """Records queued for one write, with their entries, byte count and buffer count."""

    records: list[tuple[bytes, ...]] = attrs.Factory(list)
    entries: list[Entry] = attrs.Factory(list)
    size: int = 0
    buffers: int = 0

    def __bool__(self) -> bool:
        return bool(self.records)

    def add(self, record: tuple[bytes, ...], entry: Entry) -> None:
        self.records.append(record)
        self.entries.append(entry)
        self.size += sum(map(len, record))
        self.buffers += len(record)

    def flat(self) -> list[bytes]:
        """Every buffer of every record, in order: what one writev(2) writes."""
        return [piece for record in self.records for piece in record]

    def drop(self, *, keep_last: bool, keep_notes: bool, budget: int | None = None) -> list[Entry]:
        """Drop the records that cannot be written; return the entries dropped.

        Output always goes; with `keep_notes` the rest stays queued (notes, state changes,
        gaps: what clients are told, a few small records), the newest first within `budget`
        bytes if one is given; the last record stays if asked (a completion)."""
        last = len(self.records) - 1 if keep_last else len(self.records)
        kept: set[int] = set(range(last, len(self.records)))
        room = budget
        for i in reversed(range(last) if keep_notes else ()):
            size = sum(map(len, self.records[i]))
            if isinstance(self.entries[i], Output) or (room is not None and size > room):
                continue
            kept.add(i)
            if room is not None:
                room -= size
        dropped = [entry for i, entry in enumerate(self.entries) if i not in kept]
        self.records = [record for i, record in enumerate(self.records) if i in kept]
        self.entries = [entry for i, entry in enumerate(self.entries) if i in kept]
        self.size = sum(sum(map(len, record)) for record in self.records)
        self.buffers = sum(map(len, self.records))
        return dropped
