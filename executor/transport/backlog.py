"""Replies waiting for a client's socket, bounded: a client that sends and never reads cannot
make the daemon hold its answers without end.

Theory of operation: a session answers some requests from tasks of their own — a JSON-RPC
batch, an MCP ``tools/call`` — so that a slow one never stops its reader.  Each reply is held
in memory until the socket takes it; a client that keeps sending and never reads would have
the daemon hold every one (measured: 1.8 MB of batches held 393 MiB).  Every reply a session
sends is counted here while it waits for the socket, and the reader reads no further message
while more than `limit` bytes wait: the client's own writes then wait (TCP), as they do for
requests the reader answers itself.  Notifications (output, run events) are not counted: they
have their own back-pressure (the pump), and a control must still be read while output waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio

REPLY_BACKLOG_BYTES = 1024 * 1024  # replies waiting for the socket before the reader pauses


class ReplyBacklog:
    """Bytes of replies waiting for one connection's socket."""

    def __init__(self, limit: int = REPLY_BACKLOG_BYTES) -> None:
        self.limit = limit
        self.waiting = 0
        self._room = trio.Event()
        self._room.set()

    @contextlib.contextmanager
    def holding(self, size: int) -> Iterator[None]:
        """Count a reply of `size` bytes while it is being sent."""
        self.waiting += size
        if self.waiting > self.limit and self._room.is_set():
            self._room = trio.Event()
        try:
            yield
        finally:
            self.waiting -= size
            if self.waiting <= self.limit:
                self._room.set()

    async def wait_room(self) -> None:
        """Return once no more than `limit` bytes wait (at once, with no checkpoint, if so)."""
        if not self._room.is_set():
            await self._room.wait()
