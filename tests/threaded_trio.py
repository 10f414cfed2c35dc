"""Driving trio clients from hypothesis' synchronous state-machine rules.

Rules are plain functions, so the clients live in a trio loop on a thread (``ThreadedHost``),
and each connection is held open by a *keeper* task there, which runs the operations the
rules hand it, one at a time.  Daemons run as real processes: signal handling (their reaper)
needs the main thread of their own process.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Self, TypeVar

import outcome
import trio

C = TypeVar("C")


class Keeper(Generic[C]):
    """One client connection held open in the trio loop, running the rules' operations."""

    def __init__(self, opener: Callable[[str], AbstractAsyncContextManager[C]]) -> None:
        self._opener = opener
        self._send, self._receive = trio.open_memory_channel[
            tuple[Callable[[C], Awaitable[Any]], trio.MemorySendChannel[outcome.Outcome[Any]]]
        ](0)
        self.client: C | None = None
        self.closed = False  # set by an operation (in the loop) to end the keeper after it
        self.error: Exception | None = None

    async def serve(self, url: str, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            async with self._opener(url) as client, self._receive:
                self.client = client
                task_status.started()
                async for op, reply in self._receive:
                    await reply.send(await outcome.acapture(op, client))
                    if self.closed:
                        return
        except Exception as exc:  # e.g. a restarted daemon dropped us; the next submit says so
            self.error = exc
            self.closed = True

    async def submit(self, op: Callable[[C], Awaitable[Any]], bound: float = 30) -> Any:
        reply_send, reply_receive = trio.open_memory_channel[outcome.Outcome[Any]](1)
        with trio.fail_after(bound):
            try:
                await self._send.send((op, reply_send))
            except trio.BrokenResourceError:
                raise AssertionError(f"the connection's keeper ended: {self.error!r}") from None
            result = await reply_receive.receive()
        return result.unwrap()


class ThreadedHost:
    """A trio loop on a thread: ``setup`` starts what the rules talk to (sets ``url``)."""

    def __init__(self) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None

    async def setup(self, nursery: trio.Nursery) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(60), "the host's loop did not come up"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.run_sync(self._stop.set)
        self._thread.join(60)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.setup(nursery)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def connect(self, opener: Callable[[str], AbstractAsyncContextManager[C]]) -> Keeper[C]:
        """A new connection to ``url``, held by a keeper in the loop."""
        keeper = Keeper(opener)
        assert self._nursery is not None
        self.run(self._nursery.start, keeper.serve, self.url)
        return keeper
