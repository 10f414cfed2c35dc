"""Signals for a trio run on a thread other than the main one.

Theory of operation: only the main thread may install Python signal handlers, and trio's own
receiver (``trio.open_signal_receiver``) works only in a run on the main thread.  A daemon
whose event loop runs on a second thread (``ccx serve`` does, so that the daemon's first thread
has only adopted orphans for children: tree.py) has its signals caught here instead.  The main
thread installs a handler for each signal and makes a socket the interpreter's wakeup
descriptor: Python's C-level handler writes the signal's number to it the moment the signal
arrives, in whichever thread the kernel chose, whether or not the main thread ever runs the
(empty) Python handler.  In the run, ``dispatch``
reads those bytes and hands each number to the receivers waiting for it, coalesced as trio's
receivers coalesce them (a signal that arrives twice before it is read is seen once).

A receiver has the shape of ``trio.open_signal_receiver``, so the code that waits for signals
(the reaper, ``serve_until_signalled``) takes either.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType

import trio

SignalReceiver = Callable[..., AbstractContextManager[AsyncIterator[int]]]
"""``trio.open_signal_receiver``, or ``ForwardedSignals.open_receiver``."""

_READ_BYTES = 256


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the number already went out through the wakeup descriptor."""


class _Receiver:
    """One ``open_receiver`` block's pending signals, oldest first."""

    def __init__(self, signums: frozenset[int]) -> None:
        self.signums = signums
        self._pending: dict[int, None] = {}
        self._lot = trio.lowlevel.ParkingLot()

    def deliver(self, signum: int) -> None:
        self._pending[signum] = None
        self._lot.unpark_all()

    def __aiter__(self) -> _Receiver:
        return self

    async def __anext__(self) -> int:
        if self._pending:
            await trio.lowlevel.checkpoint()
        while not self._pending:
            await self._lot.park()
        signum = next(iter(self._pending))
        del self._pending[signum]
        return signum


class ForwardedSignals:
    """`signums` caught by the main thread's handlers, received in a trio run on any thread.

    Made (and closed) on the main thread, before the run starts: from then on a signal is never
    lost, only held until ``dispatch`` reads it.  ``close`` puts back the handlers and the wakeup
    descriptor that were there before.

    Raises:
        ValueError: not called from the main thread (Python's own rule for signal handlers).
    """

    def __init__(self, signums: Iterable[int]) -> None:
        self.signums = frozenset(signums)
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._receivers: list[_Receiver] = []
        self._previous: dict[int, object] = {}
        self._previous_wakeup: int | None = None
        try:
            self._previous_wakeup = signal.set_wakeup_fd(
                self._writer.fileno(), warn_on_full_buffer=False
            )
            for signum in self.signums:
                self._previous[signum] = signal.signal(signum, _ignore)
        except BaseException:
            self.close()
            raise

    def reclaim_wakeup(self) -> None:
        """Be the wakeup descriptor again (main thread only): for a trio run on the main
        thread, which made its own the wakeup descriptor as it started (trio's signal
        receivers are not used; the run reads this object's socket)."""
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)

    def close(self) -> None:
        """Put back what was there before (main thread only); signals are no longer seen."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
        if self._previous_wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            self._previous_wakeup = None
        self._reader.close()
        self._writer.close()

    async def dispatch(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hand every signal that arrives to the receivers open for it, until cancelled."""
        task_status.started()
        while True:
            await trio.lowlevel.wait_readable(self._reader)
            try:
                numbers = self._reader.recv(_READ_BYTES)
            except BlockingIOError:
                continue
            for signum in numbers:
                for receiver in self._receivers:
                    if signum in receiver.signums:
                        receiver.deliver(signum)

    @contextmanager
    def open_receiver(self, *signums: int) -> Iterator[AsyncIterator[int]]:
        """As ``trio.open_signal_receiver``: the signals among `signums` that arrive while the
        block is open, each once however often it came before it was read.

        Raises:
            ValueError: a signal this object does not catch.
        """
        unknown = set(signums) - self.signums
        if unknown:
            raise ValueError(f"signals not forwarded: {sorted(unknown)}")
        receiver = _Receiver(frozenset(signums))
        self._receivers.append(receiver)
        try:
            yield receiver
        finally:
            self._receivers.remove(receiver)
