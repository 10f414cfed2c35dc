"""Reading a journal file's records: through a window of its bytes, so a file of small records
costs a few reads, not two per record.

Only committed bytes are ever read (every read is bounded by a limit the caller knows to be
committed), and committed bytes never change: records are only appended, and a torn or damaged
tail is cut at open, before anyone reads.  So what the window holds stays true for as long as
it is held, however the file grows.

A big output record's data is read straight into its own buffer, apart from its head, so it is
read from the file once and copied by nobody (W10: replay); the window after such a read is
small, since what follows a big record is most likely another one.

A reader checks each record's CRC with its journal's seed (`seeds`: journal_codec.py's
binding), so a record of another journal reads as Corrupt like any damaged bytes.  It has two
seeds only where the file's version cannot be told (its magic and META both damaged): the
run's, then UNBOUND; a record checked with the second costs a second CRC.
"""

from __future__ import annotations

import os

from cc_executor.supervision.journal_codec import (
    FRAME,
    HEAD,
    K_NOTE,
    K_OUTPUT,
    MAX_RECORD,
    Corrupt,
    Incomplete,
    ReadResult,
    Record,
    crc32,
)

WINDOW = 64 * 1024  # bytes read ahead at once
DIRECT = WINDOW // 2  # a read this big goes straight to its buffer
NEAR = 4096  # the window after such a read
_OUTPUT_HEAD = HEAD.size + 1  # an output body's kind, seq and stream byte


class Reader:
    """Reads of one journal file (`fd`, not owned) through a window of its bytes, whose
    records are checked with `seeds` (the first that holds; see the module docstring)."""

    __slots__ = ("_data", "_direct", "_start", "fd", "seeds")

    def __init__(self, fd: int, seeds: tuple[int, ...]) -> None:
        assert seeds, "a record is checked with at least one seed"
        self.fd = fd
        self.seeds = seeds  # set again once the file's version is known (journal_scan.py)
        self._start = 0
        self._data = b""
        self._direct = False  # the last read went straight to its buffer

    def read(self, offset: int, length: int, limit: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer only where the file ends), reading nothing
        at or beyond `limit`, which must be committed and at least `offset + length`."""
        at = offset - self._start
        if at >= 0 and at + length <= len(self._data):
            return self._data[at : at + length]
        if length >= DIRECT:
            self._direct = True
            return os.pread(self.fd, length, offset)
        ahead = NEAR if self._direct else WINDOW
        self._direct = False
        self._data = os.pread(self.fd, max(length, min(ahead, limit - offset)), offset)
        self._start = offset
        return self._data[:length]


def _holds(crc: int, head: bytes, data: bytes, seeds: tuple[int, ...]) -> bool:
    """Whether `crc` is the CRC-32 of `head` then `data` from one of `seeds`.  The first is
    tried inline: it is the only one but where a file's version is unknown, and this runs for
    every record read."""
    return crc32(data, crc32(head, seeds[0])) == crc or any(
        crc32(data, crc32(head, seed)) == crc for seed in seeds[1:]
    )


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
    at = offset + FRAME.size
    if length >= DIRECT + _OUTPUT_HEAD:
        head = reader.read(at, _OUTPUT_HEAD, limit)
        if len(head) == _OUTPUT_HEAD and head[0] == K_OUTPUT:  # its data into its own buffer
            data = reader.read(at + _OUTPUT_HEAD, length - _OUTPUT_HEAD, limit)
            if len(head) + len(data) < length:
                return Incomplete(offset, FRAME.size + len(head) + len(data))
            if not _holds(crc, head, data, reader.seeds):
                return Corrupt(offset, "CRC mismatch")
            seq = HEAD.unpack_from(head)[1]
            return Record(K_OUTPUT, seq, head[HEAD.size :], offset, end, data)
    body = reader.read(at, length, limit)
    if len(body) < length:
        return Incomplete(offset, FRAME.size + len(body))
    if not _holds(crc, b"", body, reader.seeds):
        return Corrupt(offset, "CRC mismatch")
    kind, seq = HEAD.unpack_from(body)
    if kind > K_NOTE:
        return Corrupt(offset, f"unknown kind {kind}")
    return Record(kind, seq, memoryview(body)[HEAD.size :], offset, end)  # copied once, on decode
