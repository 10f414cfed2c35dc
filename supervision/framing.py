"""Pure framing rules for output: where a buffered stream may be cut into events.

Lines are kept whole; a line longer than the limit is cut at the limit, moved back to the start
of a UTF-8 sequence when the bytes there are valid UTF-8.
"""

from __future__ import annotations

# A property of UTF-8, not a tunable: a code point is one lead byte and at most 3 continuations.
UTF8_MAX_CONTINUATION = 3


def _is_continuation(byte: int) -> bool:
    return byte & 0b1100_0000 == 0b1000_0000


def _sequence_length(lead: int) -> int:
    if lead & 0b1110_0000 == 0b1100_0000:
        return 2
    if lead & 0b1111_0000 == 0b1110_0000:
        return 3
    if lead & 0b1111_1000 == 0b1111_0000:
        return 4
    return 1


def utf8_safe_cut(data: bytes | bytearray, limit: int) -> int:
    """The largest cut <= limit that does not split a UTF-8 sequence (limit if none is found)."""
    if limit >= len(data):
        return len(data)
    cut = limit
    while cut > 0 and limit - cut < UTF8_MAX_CONTINUATION and _is_continuation(data[cut]):
        cut -= 1
    if cut == 0 or _is_continuation(data[cut]):
        return limit  # not valid UTF-8 here: any cut is as good as another
    return cut


def incomplete_utf8_tail(data: bytes | bytearray) -> int:
    """How many trailing bytes form a UTF-8 sequence that has not been completed yet."""
    start = len(data) - 1
    lowest = max(0, len(data) - 1 - UTF8_MAX_CONTINUATION)
    while start > lowest and _is_continuation(data[start]):
        start -= 1
    if start < 0 or _is_continuation(data[start]):
        return 0
    tail = len(data) - start
    return tail if tail < _sequence_length(data[start]) else 0


def take_frames(buf: bytearray, max_chunk: int, *, flush: bool) -> list[bytes]:
    """Remove from `buf` and return the pieces that are ready to deliver.

    Without `flush`, a trailing partial line stays in `buf` (unless it exceeds max_chunk);
    with it, everything is taken.  No piece is longer than max_chunk.
    """
    frames: list[bytes] = []
    while buf:
        if len(buf) > max_chunk:
            cut = buf.rfind(b"\n", 0, max_chunk) + 1
            if cut == 0:
                cut = utf8_safe_cut(buf, max_chunk)
        elif flush:
            cut = len(buf)
        else:
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                break
        frames.append(_take(buf, cut))
    return frames


def _take(buf: bytearray, cut: int) -> bytes:
    """Remove and return the first `cut` bytes of `buf`, copying them once (not twice, as
    ``bytes(buf[:cut])`` would); the whole buffer moves out without any copy at all."""
    if cut == len(buf):
        piece = bytes(buf)
        buf.clear()
        return piece
    with memoryview(buf) as view:
        piece = view[:cut].tobytes()
    del buf[:cut]
    return piece


def take_partial(buf: bytearray) -> bytes:
    """Take a partial line whose wait is over, leaving an unfinished UTF-8 sequence behind."""
    cut = len(buf) - incomplete_utf8_tail(buf)
    if cut == 0:
        cut = len(buf)  # nothing but an unfinished sequence: it has waited long enough
    return _take(buf, cut)
