"""The journal's CRC is zlib's CRC-32, whichever library computes it: a journal written by an
earlier version (framed with `zlib.crc32`) reads back whole, and one flipped bit is still found."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cc_executor.supervision.events import Output
from cc_executor.supervision.journal_codec import (
    FRAME,
    HEAD,
    K_OUTPUT,
    UNBOUND,
    Corrupt,
    Entry,
    Incomplete,
    crc32,
)
from cc_executor.supervision.journal_reader import DIRECT, Reader
from cc_executor.supervision.journal_scan import read_entry


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=9000), start=st.integers(0, 2**32 - 1))
def test_the_checksum_is_zlibs(data: bytes, start: int) -> None:
    assert crc32(data) == zlib.crc32(data)
    assert crc32(data, start) == zlib.crc32(data, start)
    assert crc32(memoryview(data)) == zlib.crc32(data)


def _zlib_framed(seq: int, data: bytes) -> bytes:
    """An output record as the journal writes it, its CRC made by zlib itself."""
    body = HEAD.pack(K_OUTPUT, seq) + b"\x00" + data
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def test_records_framed_by_zlib_read_back_and_damage_is_found(tmp_path: Path) -> None:
    datas = [b"line\n", os.urandom(3 * DIRECT), os.urandom(DIRECT + 11)]  # small and big
    raw = bytearray(b"".join(_zlib_framed(seq, d) for seq, d in enumerate(datas, 1)))
    path = tmp_path / "j"
    for flip in (None, len(raw) - 1):  # whole, then the last data byte flipped
        if flip is not None:
            raw[flip] ^= 0x01
        path.write_bytes(raw)
        fd = os.open(path, os.O_RDONLY)
        try:
            reader, offset = Reader(fd, (UNBOUND,)), 0  # v1: unseeded
            got: list[Entry | Incomplete | Corrupt] = []
            while offset < len(raw):
                found = read_entry(reader, offset, len(raw))
                if isinstance(found, Incomplete | Corrupt):
                    got.append(found)
                    break
                record, entry = found
                got.append(entry)
                offset = record.end
        finally:
            os.close(fd)
        expected = [Output(seq=seq, stream="stdout", data=d) for seq, d in enumerate(datas, 1)]
        if flip is None:
            assert got == expected
        else:
            assert got[:2] == expected[:2]
            assert got[2] == Corrupt(
                sum(map(len, map(_zlib_framed, (1, 2), datas))), "CRC mismatch"
            )
