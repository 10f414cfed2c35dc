"""Requests in flight on one connection: each has its own id, and only its reply wakes it.

The connection's reader hands each reply to `Requests.find`; the caller waiting in `send` gets
the result or raises the error. When the socket goes, `fail_all` wakes every waiting caller
with the same `ConnectionLost` (whether the daemon acted on the request cannot be known).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from cc_executor.executor.client.errors import ClientError, ConnectionLost, LimitExceededError
from cc_executor.protocol import ErrorCode, Request, encode_message

if TYPE_CHECKING:
    from cc_executor.executor.client.run import RunStream

# Methods whose reply starts a run: the reader makes the run's stream as it reads the reply.
RUN_STARTS = frozenset({"execute", "claude", "claude.resume"})


@attrs.define(eq=False)
class Pending:
    """A request waiting for its reply."""

    method: str
    durable: bool = False  # it starts a durable run (its stream is made on the reply)
    # An attach's new stream: the reader puts it in place as it reads the result (which comes
    # before the first replayed event), so an attach that fails changes no stream at all.
    stream: RunStream | None = None
    result: dict[str, Any] | None = None
    error: ClientError | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    def resolve(self, result: dict[str, Any]) -> None:
        self.result = result
        self.done.set()

    def reject(self, error: ClientError) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class Requests:
    """The requests of one connection that wait for a reply."""

    def __init__(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        # The daemon's bound on one message (its greeting's limits): a longer one would make
        # it close the whole connection (1009), so it is refused here, before it is sent.
        self.max_message_bytes: int | None = None

    def find(self, request_id: object) -> Pending | None:
        """The request a reply answers; None when its caller gave up (or never sent it)."""
        return self._pending.get(request_id) if isinstance(request_id, int) else None

    async def send(
        self, ws: WebSocketConnection, pending: Pending, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Send the request and wait (at most the request timeout) for its reply's result.

        Raises:
            ConnectionLost: the socket closed under it; the server's error, as replied.
            LimitExceededError: the request is longer than the daemon's message bound.
        """
        request_id = next(self._ids)
        message = encode_message(Request(request_id, pending.method, params))
        bound = self.max_message_bytes
        if bound is not None and len(message) > bound // 4:  # a str: at most 4 bytes a char
            size = len(message) if message.isascii() else len(message.encode())
            if size > bound:
                raise LimitExceededError(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"{pending.method}: a request of {size} bytes is more than the daemon takes "
                    f"in one message ({bound} bytes); nothing was sent",
                    {"limit": "max_message_bytes", "value": bound},
                )
        self._pending[request_id] = pending
        try:
            try:
                await ws.send_message(message)
            except ConnectionClosed:
                raise ConnectionLost("the connection closed under a request") from None
            with trio.fail_after(math.inf if self._timeout is None else self._timeout):
                await pending.done.wait()
        finally:
            self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def fail_all(self, error: ClientError) -> None:
        for pending in self._pending.values():
            pending.reject(error)
        self._pending.clear()
