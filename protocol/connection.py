"""The protocol state of one client connection, as seen by the server.

Theory of operation: the daemon feeds each received text frame to `receive` and gets
events; every frame it sends is produced by this object, which is how it enforces the
rules that need memory:

- Each request id is answered exactly once. `receive` makes the id of every
  `RequestReceived` pending; `respond`, `respond_error`, `make_response` and `make_error`
  remove it, and refuse (LocalProtocolError) an id that is not pending: answered already,
  or never received. `Invalid` events are answered by their own reply and never pending.
  `encode`/`encode_batch` refuse a reply whose id is still pending (one not made by make_*).
- A message whose id is still pending is a duplicate: it is refused with -32600, id null
  and data `{"duplicate_id": id}` (replying with the id would look like the answer to
  the first request), and the first request is left alone.
- Run events carry `seq`, contiguous from 1 within each run (or from where `attach_run`
  says), and none may follow `process.completed` or `detach_run`.

Ids may be reused once answered, as JSON-RPC allows. Memory: one entry per pending id and
per run seen on this connection.
"""

from collections.abc import KeysView, Mapping, Sequence

from cc_executor.protocol.codec import (
    decode,
    encode_batch,
    encode_message,
    encode_output,
    invalid,
)
from cc_executor.protocol.errors import InvalidRequest, JsonRpcError, LocalProtocolError
from cc_executor.protocol.events import Batch, Event, Invalid, Received, RequestReceived, Single
from cc_executor.protocol.messages import (
    ErrorResponse,
    Id,
    Message,
    Notification,
    Reply,
    Response,
)
from cc_executor.protocol.methods import PROCESS_COMPLETED, PROCESS_OUTPUT, RUN_EVENTS


class ServerConnection:
    """Sans-I/O JSON-RPC state for one connection: text in, events out; replies in, text out."""

    def __init__(self) -> None:
        self._pending: dict[Id, None] = {}  # a dict, for its live read-only keys view
        self._next_seq: dict[str, int] = {}  # run -> the seq its next event must carry
        self._closed: set[str] = set()  # runs completed or detached: no more events

    @property
    def pending_ids(self) -> KeysView[Id]:
        """Ids received and not yet answered (a live, read-only view)."""
        return self._pending.keys()

    # -- receiving ---------------------------------------------------------------------

    def receive(self, text: str) -> Received:
        """Read one text frame; never raises for anything the peer sends."""
        received = decode(text)
        if isinstance(received, Single):
            return Single(self._admit(received.event))
        return Batch(tuple(self._admit(event) for event in received.events))

    def _admit(self, event: Event) -> Event:
        if isinstance(event, RequestReceived):
            id_: Id | None = event.id
        elif isinstance(event, Invalid):
            id_ = event.reply.id
        else:
            return event
        if id_ is not None and id_ in self._pending:
            duplicate = InvalidRequest("Invalid Request: duplicate id", {"duplicate_id": id_})
            return invalid(None, duplicate)
        if isinstance(event, RequestReceived):
            self._pending[event.id] = None
        return event

    # -- replies -----------------------------------------------------------------------

    def respond(self, id_: Id, result: Mapping[str, object]) -> str:
        """Answer request `id_` with `result`."""
        self._check_pending(id_)
        text = encode_message(Response(id_, result))
        del self._pending[id_]
        return text

    def respond_error(self, id_: Id, exc: JsonRpcError) -> str:
        """Answer request `id_` with the error `exc` carries."""
        self._check_pending(id_)
        text = encode_message(ErrorResponse(id_, exc.error))
        del self._pending[id_]
        return text

    def make_response(self, id_: Id, result: Mapping[str, object]) -> Response:
        """Answer `id_`, to send with `encode` or inside `encode_batch`."""
        self._check_pending(id_)
        del self._pending[id_]
        return Response(id_, result)

    def make_error(self, id_: Id | None, exc: JsonRpcError) -> ErrorResponse:
        """Answer `id_` with an error, to send with `encode` or inside `encode_batch`.

        `id_` None makes the reply to a frame that carried no readable id (say, a binary
        frame); it answers no request.
        """
        if id_ is not None:
            self._check_pending(id_)
            del self._pending[id_]
        return ErrorResponse(id_, exc.error)

    def encode(self, message: Message) -> str:
        """The frame for a reply made by `make_*` or an `Invalid` event, or any other message."""
        self._check_made(message)
        return encode_message(message)

    def encode_batch(self, replies: Sequence[Reply]) -> str:
        """The array answering a batch: `make_*` replies and the `Invalid` events' replies.

        Raises:
            LocalProtocolError: `replies` is empty (a batch of notifications gets no reply).
        """
        for reply in replies:
            self._check_made(reply)
        return encode_batch(replies)

    def _check_made(self, message: Message) -> None:
        # A reply built by hand rather than by make_* would leave its id pending forever.
        if isinstance(message, Response | ErrorResponse) and message.id in self._pending:
            raise LocalProtocolError(f"id {message.id!r} is still pending: reply with make_*")

    def _check_pending(self, id_: Id) -> None:
        if id_ not in self._pending:
            raise LocalProtocolError(
                f"id {id_!r} is not pending: answered already or never received"
            )

    # -- notifications -----------------------------------------------------------------

    def notify(self, method: str, params: Mapping[str, object]) -> str:
        """A notification that belongs to no run (e.g. `connected`)."""
        if method in RUN_EVENTS:
            raise LocalProtocolError(f"{method} is a run event: send it with run_event")
        return encode_message(Notification(method, params))

    def run_event(self, run: str, seq: int, method: str, params: Mapping[str, object]) -> str:
        """A run event other than output; `run` and `seq` are added to `params`."""
        if method not in RUN_EVENTS or method == PROCESS_OUTPUT:
            raise LocalProtocolError(f"{method} is not a run event sent by run_event")
        if "run" in params or "seq" in params:
            raise LocalProtocolError("run_event adds run and seq itself")
        self._check_seq(run, seq)
        text = encode_message(Notification(method, {"run": run, "seq": seq, **params}))
        if method == PROCESS_COMPLETED:
            self._next_seq.pop(run, None)
            self._closed.add(run)
        else:
            self._next_seq[run] = seq + 1
        return text

    def output(
        self, run: str, seq: int, stream: str, data: bytes, max_frame: int | None = None
    ) -> str:
        """A `process.output` notification (see `encode_output`)."""
        self._check_seq(run, seq)
        text = encode_output(run, seq, stream, data, max_frame)
        self._next_seq[run] = seq + 1
        return text

    def attach_run(self, run: str, next_seq: int) -> None:
        """Let events of `run` flow again, the next one carrying `next_seq` (for attach)."""
        self._closed.discard(run)
        self._next_seq[run] = next_seq

    def detach_run(self, run: str) -> None:
        """Send no more events of `run` until `attach_run`."""
        self._next_seq.pop(run, None)
        self._closed.add(run)

    def _check_seq(self, run: str, seq: int) -> None:
        if run in self._closed:
            raise LocalProtocolError(f"run {run!r} has completed or is detached")
        expected = self._next_seq.get(run, 1)
        if seq != expected:
            raise LocalProtocolError(f"run {run!r}: seq {seq}, expected {expected}")
