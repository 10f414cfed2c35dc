"""What `ServerConnection.receive` hands the daemon: one event per JSON-RPC message."""

from typing import TypeAlias

import attrs

from cc_executor.protocol.messages import ErrorResponse, Id
from cc_executor.protocol.methods import Params


@attrs.frozen
class RequestReceived:
    """A valid call; the daemon must answer `id` exactly once.

    `ignored` names the params left out because the connection's profile ignores params it
    does not know for this method (the original CC-Executor's lenient `execute`).
    """

    id: Id
    method: str
    params: Params
    ignored: tuple[str, ...] = ()


@attrs.frozen
class NotificationReceived:
    """A valid one-way message for a known method; never answered."""

    method: str
    params: Params


@attrs.frozen
class Ignored:
    """A notification we cannot act on (unknown method, bad params); JSON-RPC forbids a reply."""

    method: str
    reason: str


@attrs.frozen
class Invalid:
    """A message to refuse at once with `reply` (already accounted for: send it as is)."""

    reply: ErrorResponse


Event: TypeAlias = RequestReceived | NotificationReceived | Ignored | Invalid


@attrs.frozen
class Single:
    """A frame holding one message (or one that could not be read at all)."""

    event: Event

    @property
    def events(self) -> tuple[Event, ...]:
        """The event, so that single frames and batches iterate alike."""
        return (self.event,)


@attrs.frozen
class Batch:
    """A JSON-RPC batch: one event per element, in order; reply with one array."""

    events: tuple[Event, ...]


Received: TypeAlias = Single | Batch
