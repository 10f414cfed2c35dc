"""The journal reader's window: what it returns is what the file holds, however the file grows
between reads, and it never reads at or beyond the limit it is given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_executor.supervision.journal_codec import UNBOUND
from cc_executor.supervision.journal_reader import WINDOW, Reader

SIZE = 3 * WINDOW + 123

reads = st.lists(
    st.tuples(st.integers(0, SIZE - 1), st.integers(1, WINDOW)), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(reads=reads, grow_at=st.integers(0, 39))
def test_every_read_is_what_the_file_holds_as_it_grows(
    tmp_path_factory: pytest.TempPathFactory, reads: list[tuple[int, int]], grow_at: int
) -> None:
    """The file is written in two parts; reads before the second may only see the first (the
    limit), reads after see both — a window filled before the file grew never serves stale or
    missing bytes."""
    content = os.urandom(SIZE)
    first = SIZE // 2
    path = tmp_path_factory.mktemp("reader") / "j"
    path.write_bytes(content[:first])
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        reader = Reader(fd, (UNBOUND,))
        limit = first
        for i, (offset, length) in enumerate(reads):
            if i == grow_at:
                os.write(fd, content[first:])
                limit = SIZE
            offset = min(offset, limit - 1)
            length = min(length, limit - offset)
            assert reader.read(offset, length, limit) == content[offset : offset + length]
    finally:
        os.close(fd)


def test_no_byte_at_or_beyond_the_limit_is_read(tmp_path: Path) -> None:
    """Bytes past the limit (a batch being written, a torn tail about to be cut) are never in
    the window: after they change on disk, a read up to a new limit returns the new bytes."""
    path = tmp_path / "j"
    path.write_bytes(b"a" * 100 + b"torn")
    fd = os.open(path, os.O_RDWR)
    try:
        reader = Reader(fd, (UNBOUND,))
        assert reader.read(0, 10, 100) == b"a" * 10
        os.ftruncate(fd, 100)  # the torn bytes are cut, then a whole record is written there
        os.pwrite(fd, b"good", 100)
        assert reader.read(98, 6, 104) == b"aagood"
    finally:
        os.close(fd)


def test_a_read_where_the_file_ends_is_short(tmp_path: Path) -> None:
    """A file shorter than the caller believes (someone cut it) reads short, as pread does."""
    path = tmp_path / "j"
    path.write_bytes(b"x" * 50)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert Reader(fd, (UNBOUND,)).read(40, 20, 60) == b"x" * 10
    finally:
        os.close(fd)
