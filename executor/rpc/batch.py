"""A JSON-RPC batch on a connection, and what a handler gives back.

A batch is served by a task of its own (``serve_batch``), so that a batch waiting for a ladder
never stops the connection's reader: each request in it runs as it would alone (a run's
controls through that run's queue, the rest through their handler), each reply lands in its
slot of a ``BatchReply``, and the array goes out once all are in, followed by what the replies
hold back (a started run's ``process.started``; the gates of the batch's requests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import trio

from cc_executor.protocol import ErrorResponse, Event, Id, Invalid, RequestReceived, Response
from cc_executor.protocol.methods import RUN_METHODS
from cc_executor.protocol.notices import Notice
from cc_executor.protocol.results import Result

if TYPE_CHECKING:
    from cc_executor.executor.rpc.session import Session


@attrs.frozen
class Handled:
    """A handler's result, and what must follow the reply: `notice` goes out right behind it
    (with the reply, in the same write, when the reply is sent alone: a started run's
    ``process.started``), then `follow_up` runs."""

    result: Result
    follow_up: Callable[[], Awaitable[None]] | None = None
    notice: Notice | None = None


Handler = Callable[[], Awaitable[Handled]]


@attrs.define(eq=False)
class BatchReply:
    """The replies of one JSON-RPC batch, in request order, sent as one array."""

    replies: list[Response | ErrorResponse | None]
    follow_ups: list[Callable[[], Awaitable[None]]] = attrs.field(factory=list)
    ids: list[Id] = attrs.field(factory=list)
    waiting: int = 0
    done: trio.Event = attrs.field(factory=trio.Event)

    def settled(self) -> None:
        """One more request of the batch has its reply in its slot (or none: its client is
        gone)."""
        self.waiting -= 1
        if self.waiting == 0:
            self.done.set()


async def serve_batch(session: Session, events: tuple[Event, ...]) -> None:
    """Requests in a batch run as they would alone; the array goes out when all are done."""
    batch = BatchReply([None] * len(events))
    for index, event in enumerate(events):
        if isinstance(event, Invalid):
            session.errors += 1
            batch.replies[index] = event.reply
        elif isinstance(event, RequestReceived):
            session.requests += 1
            session.note_ignored(event)
            batch.waiting += 1
            batch.ids.append(event.id)
            if event.method in RUN_METHODS:
                await session.handles.enqueue(event, (batch, index))
            else:
                await session.answer(event.id, session.handler_for(event), (batch, index))
    if batch.waiting:
        await batch.done.wait()
    replies = [reply for reply in batch.replies if reply is not None]
    if replies:
        await session.send_text(session.conn.encode_batch(replies))
    for follow_up in batch.follow_ups:
        await follow_up()
    for id_ in batch.ids:
        session.gates.open(id_)
