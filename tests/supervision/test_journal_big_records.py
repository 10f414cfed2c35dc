"""A big output record is read with its data apart from its head (no copy on decode): what it
yields is what was written, and damage or a torn tail in either part is found as in any other."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cc_executor.supervision.events import Note, Output
from cc_executor.supervision.journal_codec import (
    UNBOUND,
    Corrupt,
    Entry,
    Incomplete,
    Record,
    encode_entry,
    seed_of,
)
from cc_executor.supervision.journal_reader import DIRECT, Reader, read_record
from cc_executor.supervision.journal_scan import read_entry

SEED = seed_of("big")  # the journal the records are bound to
BIG = os.urandom(3 * DIRECT)
ENTRIES: list[Entry] = [
    Output(seq=1, stream="stdout", data=BIG),
    Output(seq=2, stream="stderr", data=b"small\n"),
    Output(seq=3, stream="stderr", data=BIG[: DIRECT + 1]),
    Note(seq=4, name="big", data=BIG),  # big, but not output: read whole
    Output(seq=5, stream="stdout", data=b"x" * (DIRECT - 20)),  # just under the split
]


def _write(path: Path, raw: bytes) -> int:
    path.write_bytes(raw)
    return os.open(path, os.O_RDONLY)


def test_every_entry_reads_back_as_written(tmp_path: Path) -> None:
    raw = b"".join(encode_entry(entry, SEED) for entry in ENTRIES)
    fd = _write(tmp_path / "j", raw)
    try:
        reader, offset, got = Reader(fd, (SEED,)), 0, []
        while offset < len(raw):
            found = read_entry(reader, offset, len(raw))
            assert not isinstance(found, Incomplete | Corrupt), found
            record, entry = found
            got.append(entry)
            offset = record.end
        assert got == ENTRIES
        assert offset == len(raw)
    finally:
        os.close(fd)


def test_a_big_output_is_read_apart(tmp_path: Path) -> None:
    raw = encode_entry(ENTRIES[0], SEED)
    fd = _write(tmp_path / "j", raw)
    try:
        record = read_record(Reader(fd, (SEED,)), 0, len(raw))
        assert isinstance(record, Record)
        assert record.data == BIG
        assert bytes(record.payload) == b"\x00"  # the stream byte only
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", [8, 12, 17, 18, 5000, -1])  # CRC, seq, stream, data, last
def test_a_flipped_byte_anywhere_in_a_big_output_is_corrupt(tmp_path: Path, where: int) -> None:
    raw = bytearray(encode_entry(ENTRIES[0], SEED))
    raw[where] ^= 0x40
    fd = _write(tmp_path / "j", bytes(raw))
    try:
        found = read_record(Reader(fd, (SEED,)), 0, len(raw))
        assert isinstance(found, Corrupt)
    finally:
        os.close(fd)


@pytest.mark.parametrize("seeds", [(seed_of("other"),), (UNBOUND,)])
def test_a_big_output_of_another_journal_is_corrupt(tmp_path: Path, seeds: tuple[int]) -> None:
    """Its data is checked apart from its head, still from its journal's seed: another
    journal's (or a v1 file's) reader takes it for damage."""
    raw = encode_entry(ENTRIES[0], SEED)
    fd = _write(tmp_path / "j", raw)
    try:
        assert read_record(Reader(fd, seeds), 0, len(raw)) == Corrupt(0, "CRC mismatch")
    finally:
        os.close(fd)


@pytest.mark.parametrize("cut", [8, 12, 30, DIRECT, len(BIG)])  # in the head, then the data
def test_a_big_output_cut_short_is_incomplete(tmp_path: Path, cut: int) -> None:
    """A file shorter than its committed limit (cut by someone) reads short, wherever the cut."""
    raw = encode_entry(ENTRIES[0], SEED)
    fd = _write(tmp_path / "j", raw[:cut])
    try:
        found = read_record(Reader(fd, (SEED,)), 0, len(raw))
        assert isinstance(found, Incomplete)
        assert found.available == cut
    finally:
        os.close(fd)
