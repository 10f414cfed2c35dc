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
