"""Reading a journal file's records: through a window of its bytes, so a file of small records
costs a few reads, not two per record.

Only committed bytes are ever read (every read is bounded by a limit the caller knows to be
committed), and committed bytes never change: records are only appended, and a torn or damaged
tail is cut at open, before anyone reads.  So what the window holds stays true for as long as
it is held, however the file grows.
"""

from __future__ import annotations

import os
import zlib

from cc_executor.supervision.journal_codec import (
    FRAME,
    HEAD,
    K_NOTE,
    MAX_RECORD,
    Corrupt,
    Incomplete,
    ReadResult,
    Record,
)

WINDOW = 64 * 1024  # bytes read ahead at once; a bigger read goes straight to its buffer


class Reader:
    """Reads of one journal file (`fd`, not owned) through a window of its bytes."""

    __slots__ = ("_data", "_start", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._start = 0
        self._data = b""

    def read(self, offset: int, length: int, limit: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer only where the file ends), reading nothing
        at or beyond `limit`, which must be committed and at least `offset + length`."""
        at = offset - self._start
        if at >= 0 and at + length <= len(self._data):
            return self._data[at : at + length]
        if length >= WINDOW // 2:
            return os.pread(self.fd, length, offset)
        self._data = os.pread(self.fd, max(length, min(WINDOW, limit - offset)), offset)
        self._start = offset
        return self._data[:length]


def read_record(reader: Reader, offset: int, limit: int) -> ReadResult:
    """The record at `offset`, reading no byte at or beyond `limit`."""
    available = limit - offset
    if available < FRAME.size + HEAD.size:
        return Incomplete(offset, max(0, available))
    frame = reader.read(offset, FRAME.size, limit)
    if len(frame) < FRAME.size:
        return Incomplete(offset, len(frame))
    length, crc = FRAME.unpack(frame)
    if length < HEAD.size or length > MAX_RECORD:
        return Corrupt(offset, f"impossible length {length}")
    end = offset + FRAME.size + length
    if end > limit:
        return Incomplete(offset, available)
    body = reader.read(offset + FRAME.size, length, limit)
    if len(body) < length:
        return Incomplete(offset, FRAME.size + len(body))
    if zlib.crc32(body) != crc:
        return Corrupt(offset, "CRC mismatch")
    kind, seq = HEAD.unpack_from(body)
    if kind > K_NOTE:
        return Corrupt(offset, f"unknown kind {kind}")
    return Record(kind, seq, memoryview(body)[HEAD.size :], offset, end)  # copied once, on decode
