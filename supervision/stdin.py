"""A run's stdin pipe: bounded writes that never block anything but their own caller.

Theory of operation: writes are handed to one writer task per run (`serve`, in the runner's
nursery) through a channel, and the caller waits for its own write only.  So:
  * the bytes waiting for the child are bounded (`max_pending`): a write that would go over is
    refused at once with StdinFull, before anything is queued;
  * `write` returns once every byte is in the pipe, or raises StdinClosed; `queue` only
    queues (at once, without a checkpoint), for a caller that must not wait on the child;
  * a caller that is cancelled before its write started withdraws it; once started, the writer
    finishes it whole — the child never sees half of a write followed by the next one;
  * `close` (the caller's EOF, a cancel, the run ending) closes the pipe: the write in flight
    and every queued one fail with StdinClosed, and the writer ends; a caller whose EOF must
    come after what was queued (a Claude session's close) waits for `drained` first.
Nothing here waits on the run's control lock, so a child that does not read holds up only
the stdin callers, never PAUSE, RESUME, CANCEL or signals.
"""

from __future__ import annotations

import attrs
import trio

from cc_executor.supervision.errors import StdinClosed, StdinFull


@attrs.define(eq=False)
class _Write:
    data: bytes
    done: trio.Event = attrs.field(factory=trio.Event)
    started: bool = False
    written: bool = False
    withdrawn: bool = False
    error: StdinClosed | None = None


class StdinPipe:
    """The write end of a child's stdin, with its writer task."""

    def __init__(self, stream: trio.lowlevel.FdStream, max_pending: int) -> None:
        self._stream = stream
        self._max_pending = max_pending
        self.pending = 0  # bytes accepted and not yet in the pipe (or failed)
        self.open = True
        self._closed_why = "stdin is closed"
        self._drained = trio.Event()  # set while no accepted byte waits for the pipe
        self._drained.set()
        # Every queued write holds at least one byte, so the byte bound bounds the items.
        self._send, self._receive = trio.open_memory_channel[_Write](max(1, max_pending))

    async def write(self, data: bytes) -> None:
        """Write `data` whole; return once it is in the pipe.

        Raises:
            StdinFull: `data` would take the pending bytes over the bound (nothing queued).
            StdinClosed: stdin is closed, or was closed before these bytes got in.
        """
        if not data:
            if not self.open:
                raise StdinClosed(self._closed_why)
            await trio.lowlevel.checkpoint()
            return
        write = self._queue(data)
        try:
            await write.done.wait()
        finally:
            if not write.done.is_set() and not write.started:
                write.withdrawn = True  # cancelled before the writer took it: never written
        if write.error is not None:
            raise write.error

    def queue(self, data: bytes) -> None:
        """Queue `data` to be written whole, at once (no checkpoint: nothing else runs
        between this and the caller's next step); nobody waits for it to reach the pipe.

        Raises:
            StdinFull: `data` would take the pending bytes over the bound (nothing queued).
            StdinClosed: stdin is closed.
        """
        if data:
            self._queue(data)
        elif not self.open:
            raise StdinClosed(self._closed_why)

    def _queue(self, data: bytes) -> _Write:
        if not self.open:
            raise StdinClosed(self._closed_why)
        if self.pending + len(data) > self._max_pending:
            raise StdinFull(self.pending, len(data), self._max_pending)
        write = _Write(data)
        self.pending += len(data)
        if self._drained.is_set():
            self._drained = trio.Event()
        self._send.send_nowait(write)
        return write

    async def drained(self) -> None:
        """Return once every byte accepted so far is in the pipe (or failed: closed), so that
        an EOF after it cannot drop a queued write."""
        await self._drained.wait()

    def close(self, why: str = "stdin is closed") -> None:
        """Close the pipe (the child reads EOF); pending writes fail with StdinClosed(why)."""
        if not self.open:
            return
        self.open = False
        self._closed_why = why
        self._stream.close()
        self._send.close()
        self._fail_queued()

    async def serve(self) -> None:
        """The writer task: write each queued write whole, in order, until closed."""
        async with self._receive:
            async for write in self._receive:
                try:
                    if not write.withdrawn:
                        write.started = True
                        await self._write_whole(write)
                finally:
                    self._settle(write)

    async def _write_whole(self, write: _Write) -> None:
        try:
            await self._stream.send_all(write.data)
            write.written = True
        except trio.ClosedResourceError:
            write.error = StdinClosed(f"{self._closed_why} before these bytes were written")
        except trio.BrokenResourceError:
            self.close("the process closed its stdin")
            write.error = StdinClosed(self._closed_why)

    def _settle(self, write: _Write) -> None:
        if write.done.is_set():
            return
        if write.error is None and not write.written:
            write.error = StdinClosed(f"{self._closed_why} before these bytes were written")
        self.pending -= len(write.data)
        write.done.set()
        if not self.pending:
            self._drained.set()

    def _fail_queued(self) -> None:
        """Fail what the writer has not taken (it may be gone: the runner was aborted)."""
        while True:
            try:
                write = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            self._settle(write)
