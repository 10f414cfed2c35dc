"""The WebSocket's inbound side: messages read and not yet taken, bounded in bytes per
connection, and the bytes of messages still being assembled, bounded across the daemon."""

from __future__ import annotations

from collections import deque

import trio

# What a queued message costs beyond its payload (its object and queue entry, as measured
# with sys.getsizeof), so that a flood of empty frames is bounded too.
MESSAGE_OVERHEAD_BYTES = 64


def message_size(message: str | bytes) -> int:
    """Bytes of a message on the wire (text is counted in UTF-8)."""
    if isinstance(message, str) and not message.isascii():
        return len(message.encode())
    return len(message)


class InboundQueue:
    """Messages read and not yet taken, bounded in bytes (trio's channels bound a count).

    One producer (the reader) and one consumer (the session).  A message is let in when the
    queue is empty or it fits, so one message of any allowed size always gets through.
    """

    def __init__(self, max_bytes: int) -> None:
        self._messages: deque[tuple[str | bytes, int]] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._closed = False
        self._takers = trio.lowlevel.ParkingLot()
        self._putters = trio.lowlevel.ParkingLot()

    async def put(self, message: str | bytes) -> None:
        """Queue a message, waiting for room; after ``close`` it is dropped."""
        cost = message_size(message) + MESSAGE_OVERHEAD_BYTES
        while not self._closed and self._messages and self._bytes + cost > self._max_bytes:
            await self._putters.park()
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._messages.append((message, cost))
        self._bytes += cost
        self._takers.unpark()
        await trio.lowlevel.checkpoint()

    async def get(self) -> str | bytes | None:
        """The next message; None once the queue is closed and empty.

        A wait for a message was the checkpoint; only a message taken at once checkpoints."""
        parked = False
        while not self._messages and not self._closed:
            await self._takers.park()
            parked = True
        if not parked:
            await trio.lowlevel.checkpoint()
        if not self._messages:
            return None
        message, cost = self._messages.popleft()
        self._bytes -= cost
        self._putters.unpark_all()
        return message

    def close(self, *, discard: bool = False) -> None:
        """No more messages come in; with ``discard`` the queued ones are dropped too."""
        self._closed = True
        if discard:
            self._messages.clear()
            self._bytes = 0
        self._takers.unpark_all()
        self._putters.unpark_all()

    @property
    def queued_bytes(self) -> int:
        return self._bytes


# What all connections of a daemon may hold of messages still arriving, by default.
ASSEMBLY_BYTES = 256 * 1024 * 1024


class AssemblyBudget:
    """The bytes of the messages being assembled on every connection of a daemon.

    Each connection holds at most one message being assembled (up to ``max_message_bytes``),
    so with many connections those alone could take more memory than the machine has: a
    client that sends most of a big message and then nothing more holds it as long as its
    connection stays up.  The budget bounds their sum; a connection whose next part does not
    fit is failed (1013, try again later) and gives its part back — the others are untouched.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Count `size` more bytes, if they fit."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


CONTINUATION = 0x0
FIRST_CONTROL_OPCODE = 0x8


class FrameGauge:
    """Reads the frame headers in the bytes a client sends, to refuse a message over
    ``max_message_bytes`` the moment a header says it will be: wsproto hands a frame's
    payload over as it arrives, so without the header's length a frame declaring 1 TiB would
    be refused only once the limit of it had arrived (and been held).

    It follows frame boundaries only — wsproto still parses and checks every frame — and
    sums the lengths the data frames of one message declare (a new message starts with any
    data opcode other than continuation).  Control frames are stepped over.
    """

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._header = bytearray()  # a header that has not all arrived yet
        self._payload_left = 0  # bytes of the current frame's payload still to come
        self._declared = 0  # what the frames of the message being received declare

    def feed(self, data: bytes) -> int | None:
        """Follow `data`; the offset in it of the header of the first frame that takes its
        message over the limit (the bytes before it are the client's, to be handled), or
        None when every header so far fits."""
        offset = 0
        while offset < len(data):
            if self._payload_left:
                step = min(self._payload_left, len(data) - offset)
                self._payload_left -= step
                offset += step
                continue
            start = max(offset - len(self._header), 0)  # 0: it began in an earlier read
            taken = min(self._header_length() - len(self._header), len(data) - offset)
            self._header += data[offset : offset + taken]
            offset += taken
            if len(self._header) < self._header_length():
                continue  # its length byte came in: read the rest of it (if it is here)
            opcode, length = self._parse(self._header)
            self._header = bytearray()
            self._payload_left = length
            if opcode >= FIRST_CONTROL_OPCODE or length >> 63:
                continue  # a control frame; or a length RFC 6455 forbids, wsproto's 1002
            self._declared = length if opcode != CONTINUATION else self._declared + length
            if self._declared > self._max:
                return start
        return None

    def _header_length(self) -> int:
        """How long the header being read is, as far as its first two bytes tell (2 until
        they are in)."""
        if len(self._header) < 2:
            return 2
        second = self._header[1]
        short = second & 0x7F
        extended = 2 if short == 126 else 8 if short == 127 else 0
        return 2 + extended + (4 if second & 0x80 else 0)

    @staticmethod
    def _parse(header: bytearray) -> tuple[int, int]:
        opcode, short = header[0] & 0x0F, header[1] & 0x7F
        if short == 126:
            return opcode, int.from_bytes(header[2:4], "big")
        if short == 127:
            return opcode, int.from_bytes(header[2:10], "big")
        return opcode, short


# Fragments kept as they came before they are joined into one: a message sent in a million
# one-byte (or empty) frames costs its bytes, not a million objects and list slots.
JOIN_FRAGMENTS = 256


class MessageParts:
    """The fragments of the message being received: each run of ``JOIN_FRAGMENTS`` is joined
    into one block, so memory follows the payload whatever the fragmentation (an empty
    fragment is not kept at all)."""

    def __init__(self) -> None:
        self._blocks: list[str | bytes] = []
        self._tail: list[str | bytes] = []
        self.bytes = 0

    def add(self, data: str | bytes, size: int) -> None:
        """Keep one fragment of `size` bytes on the wire."""
        self.bytes += size
        if not data:
            return
        self._tail.append(data)
        if len(self._tail) >= JOIN_FRAGMENTS:
            self._blocks.append(_join(self._tail))
            self._tail = []

    def message(self, *, text: bool) -> str | bytes:
        """The whole message (its fragments are all text or all bytes)."""
        parts = [*self._blocks, *self._tail]
        if not parts:
            return "" if text else b""
        return parts[0] if len(parts) == 1 else _join(parts)


def _join(parts: list[str | bytes]) -> str | bytes:
    if isinstance(parts[0], str):
        return "".join(part for part in parts if isinstance(part, str))
    return b"".join(part for part in parts if isinstance(part, bytes))
