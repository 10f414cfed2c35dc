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
- A reply precedes the notifications it causes. `hold(id, run, scope)` says that request `id`
  causes events of `run`: every event of it (scope "all": the request that starts a run or
  attaches to one) or its state events (scope "state": a PAUSE, RESUME or CANCEL, whose
  `process.paused`/`resumed`/`completed` must follow the reply). While the id is pending,
  `send` refuses such an event; `held` tells the caller which reply it must wait for.

- The connection's profile (profile.py) says how it frames and reads: the original's turns
  one notice into several frames (a line each; `process.canceled` before the completion of a
  run that was cancelled, or whose CANCEL this connection answered "canceled": a CANCEL can
  join the ladder of a run ending by itself, whose completion then says it exited), ignores
  unknown params of some methods, and maps error codes.  `send_frames` gives every frame of a
  notice; the rules above are checked once per notice.
- With `binary_output` (the client negotiated binary.py's subprotocol) output goes as binary
  frames (`bytes`, binary.py's layout) and everything else as text, under the same rules.
  `wire_frames` gives the same frames as the daemon's transport writes them, so that output
  is copied no more than it must be: JSON text as orjson's UTF-8 bytes, a binary frame as its
  header and the child's bytes apart.

Ids may be reused once answered, as JSON-RPC allows. Memory: one entry per pending id and
per run seen on this connection.
"""

from collections.abc import KeysView, Sequence
from typing import Literal, TypeAlias

import attrs

from cc_executor.protocol.binary import BinaryParts, binary_header
from cc_executor.protocol.claude.notices import SESSION_NOTICES
from cc_executor.protocol.codec import (
    Utf8Text,
    decode,
    encode_batch,
    encode_message,
    encode_output_lines,
    encode_output_utf8,
    invalid,
)
from cc_executor.protocol.errors import (
    InvalidRequest,
    JsonRpcError,
    LocalProtocolError,
    ParseError,
)
from cc_executor.protocol.events import Batch, Event, Invalid, Received, RequestReceived, Single
from cc_executor.protocol.messages import (
    ErrorResponse,
    Id,
    Message,
    Notification,
    Reply,
    Response,
)
from cc_executor.protocol.names import (
    PROCESS_CANCELED,
    PROCESS_COMPLETED,
    PROCESS_PAUSED,
    PROCESS_RESUMED,
    PROCESS_STARTED,
)
from cc_executor.protocol.notices import (
    Connected,
    Notice,
    RunCompleted,
    RunOutput,
    RunPaused,
    RunResumed,
)
from cc_executor.protocol.profile import CURRENT, Profile
from cc_executor.protocol.results import ControlDone, Result
from cc_executor.protocol.server_codec import canceled_message, notice_message, result_object

# What a pending request holds back of a run: every event, its state events, the one kind of
# state event it causes (a control of a run whose events the connection pumps), or a Claude
# session's notices (`claude.turn_started` ...: a claude.* request's).
HoldScope: TypeAlias = Literal["all", "state", "paused", "resumed", "completed", "claude"]
# A frame as `wire_frames` gives it to a transport.
WireFrame: TypeAlias = str | Utf8Text | BinaryParts
_SESSION_NOTICES = tuple(SESSION_NOTICES.values())
_SEQUENCED = (RunOutput, RunPaused, RunResumed, RunCompleted, *_SESSION_NOTICES)
_STATE_SCOPE: dict[type, HoldScope] = {
    RunPaused: "paused",
    RunResumed: "resumed",
    RunCompleted: "completed",
}


_WIDTH: dict[HoldScope, int] = {"all": 2, "state": 1}
# The original's StatusUpdate fields that may be null, and the notifications it sent as one.
_STATUS_NULLS = ("exit_code", "error")
_STATUS_METHODS = frozenset(
    {PROCESS_STARTED, PROCESS_PAUSED, PROCESS_RESUMED, PROCESS_CANCELED, PROCESS_COMPLETED}
)


def holds_back(scope: HoldScope, notice: Notice) -> bool:
    """Whether a hold of `scope` on a run holds back `notice` (an event of that run)."""
    if scope == "all":
        return True
    if scope == "claude":
        return isinstance(notice, _SESSION_NOTICES)
    kind = _STATE_SCOPE.get(type(notice))
    return kind is not None and scope in ("state", kind)


def _joined(frame: WireFrame) -> str | bytes:
    """A wire frame as one value: text as `str`, a binary frame as its `bytes`."""
    if isinstance(frame, BinaryParts):
        return b"".join(frame)
    if isinstance(frame, Utf8Text):
        return frame.data.decode()
    return frame


class ServerConnection:
    """Sans-I/O JSON-RPC state for one connection: text in, events out; replies in, text out."""

    def __init__(self, profile: Profile = CURRENT, *, binary_output: bool = False) -> None:
        """`binary_output`: output as binary frames (binary.py), on the current profile only.

        Raises:
            LocalProtocolError: `binary_output` on a profile that frames output by lines.
        """
        if binary_output and profile.output_lines:
            raise LocalProtocolError(f"the {profile.name} profile has no binary output frames")
        self.profile = profile
        self.binary_output = binary_output
        self._pending: dict[Id, None] = {}  # a dict, for its live read-only keys view
        self._next_seq: dict[str, int] = {}  # run -> the seq its next event must carry
        self._closed: set[str] = set()  # runs completed or detached: no more events
        self._holds: dict[str, dict[Id, HoldScope]] = {}  # run -> pending ids holding it
        self._held_runs: dict[Id, set[str]] = {}  # pending id -> runs it holds
        self._canceled: set[str] = set()  # runs of ours whose CANCEL was answered "canceled"

    @property
    def pending_ids(self) -> KeysView[Id]:
        """Ids received and not yet answered (a live, read-only view)."""
        return self._pending.keys()

    # -- receiving ---------------------------------------------------------------------

    def receive(self, text: str) -> Received:
        """Read one text frame; never raises for anything the peer sends."""
        received = decode(text, self.profile.lenient_methods)
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
            event = invalid(None, duplicate)
        elif isinstance(event, RequestReceived):
            self._pending[event.id] = None
            return event
        if self.profile.error_codes:
            assert isinstance(event, Invalid)
            event = Invalid(attrs.evolve(event.reply, error=self.profile.error(event.reply.error)))
        return event

    # -- replies -----------------------------------------------------------------------

    def respond(self, id_: Id, result: Result) -> str:
        """Answer request `id_` with `result`."""
        self._check_pending(id_)
        text = encode_message(Response(id_, result_object(result)))
        self._answered(id_)
        self._note_canceled(result)
        return text

    def respond_error(self, id_: Id, exc: JsonRpcError) -> str:
        """Answer request `id_` with the error `exc` carries."""
        self._check_pending(id_)
        text = encode_message(ErrorResponse(id_, self.profile.error(exc.error)))
        self._answered(id_)
        return text

    def make_response(self, id_: Id, result: Result) -> Response:
        """Answer `id_`, to send inside `encode_batch` (its holds end when the batch is encoded)."""
        self._check_pending(id_)
        del self._pending[id_]
        self._note_canceled(result)
        return Response(id_, result_object(result))

    def _note_canceled(self, result: Result) -> None:
        # The original's clients read `process.canceled` after the reply to their CANCEL; the
        # completion of that run, whatever it says, is announced so (wire_frames).
        if (
            self.profile.announce_cancel
            and isinstance(result, ControlDone)
            and result.status == "canceled"
            and result.run not in self._closed
        ):
            self._canceled.add(result.run)

    def make_error(self, id_: Id | None, exc: JsonRpcError) -> ErrorResponse:
        """Answer `id_` with an error, to send with `encode` or inside `encode_batch`.

        `id_` None makes the reply to a frame that carried no readable id (say, a binary
        frame); it answers no request.
        """
        if id_ is not None:
            self._check_pending(id_)
            del self._pending[id_]
        return ErrorResponse(id_, self.profile.error(exc.error))

    def refuse_binary(self) -> str:
        """The reply to a binary frame, on every profile -32700 (the original had no code to
        keep: it dropped the connection)."""
        error = ParseError("binary frames are not accepted: send JSON-RPC 2.0 as text")
        return encode_message(ErrorResponse(None, error.error))

    def refuse_connection(self, exc: InvalidRequest) -> str:
        """The reply to a client refused at connect for the protocol it asked for, on every
        profile -32600 as documented (no original client ever asks for one we refuse)."""
        return encode_message(ErrorResponse(None, exc.error))

    def encode(self, message: Message) -> str:
        """The frame for a reply made by `make_*` or an `Invalid` event."""
        self._check_made(message)
        text = encode_message(message)
        if isinstance(message, Response | ErrorResponse) and message.id is not None:
            self._release(message.id)
        return text

    def encode_batch(self, replies: Sequence[Reply]) -> str:
        """The array answering a batch: `make_*` replies and the `Invalid` events' replies.

        Raises:
            LocalProtocolError: `replies` is empty (a batch of notifications gets no reply).
        """
        for reply in replies:
            self._check_made(reply)
        text = encode_batch(replies)
        for reply in replies:
            if reply.id is not None:
                self._release(reply.id)
        return text

    def _check_made(self, message: Message) -> None:
        # A reply built by hand rather than by make_* would leave its id pending forever.
        if isinstance(message, Response | ErrorResponse) and message.id in self._pending:
            raise LocalProtocolError(f"id {message.id!r} is still pending: reply with make_*")

    def _check_pending(self, id_: Id) -> None:
        if id_ not in self._pending:
            raise LocalProtocolError(
                f"id {id_!r} is not pending: answered already or never received"
            )

    def _answered(self, id_: Id) -> None:
        del self._pending[id_]
        self._release(id_)

    # -- reply-before-events -----------------------------------------------------------

    def hold(self, id_: Id, run: str, scope: HoldScope) -> None:
        """Request `id_` (pending) causes events of `run`: they may not go out before its reply."""
        self._check_pending(id_)
        holds = self._holds.setdefault(run, {})
        before = holds.get(id_)
        if before is None or _WIDTH.get(scope, 0) > _WIDTH.get(before, 0):  # never narrowed
            holds[id_] = scope
        self._held_runs.setdefault(id_, set()).add(run)

    def held(self, notice: Notice) -> Id | None:
        """The pending request whose reply `notice` must follow, or None if it may go now."""
        run = getattr(notice, "run", None)
        holds = self._holds.get(run) if isinstance(run, str) else None
        if not holds:
            return None
        for id_, scope in holds.items():
            if holds_back(scope, notice):
                return id_
        return None

    def _release(self, id_: Id) -> None:
        for run in self._held_runs.pop(id_, ()):
            holds = self._holds.get(run)
            if holds is not None:
                holds.pop(id_, None)
                if not holds:
                    del self._holds[run]

    # -- notifications -----------------------------------------------------------------

    def send(self, notice: Notice, max_frame: int | None = None) -> str | bytes:
        """The frame for `notice`, once the connection's rules allow it: text, or for output
        with `binary_output` a binary frame's bytes.

        `max_frame` bounds a text output frame (see `encode_output`).

        Raises:
            LocalProtocolError: a run event out of sequence or after its run's completion or
                detach, or an event whose causing request has not been answered yet; or a
                profile that frames `notice` as several frames (use `send_frames`).
        """
        frames = self.send_frames(notice, max_frame)
        if len(frames) != 1:
            raise LocalProtocolError(
                f"the {self.profile.name} profile sends {type(notice).__name__} as "
                f"{len(frames)} frames: use send_frames"
            )
        return frames[0]

    def send_frames(self, notice: Notice, max_frame: int | None = None) -> list[str | bytes]:
        """Every frame for `notice`, in order, once the connection's rules allow it: one,
        except where the profile frames it as several (see the module docstring).

        Raises:
            LocalProtocolError: as `send`.
        """
        return [_joined(frame) for frame in self.wire_frames(notice, max_frame)]

    def wire_frames(self, notice: Notice, max_frame: int | None = None) -> list[WireFrame]:
        """`send_frames` as a transport writes them, without copying output once more: a
        text frame of output as `Utf8Text` (orjson's bytes), a binary one as its header and
        the output apart (`BinaryParts`); every other frame a `str`.

        Raises:
            LocalProtocolError: as `send`.
        """
        waiting = self.held(notice)
        if waiting is not None:
            raise LocalProtocolError(
                f"{type(notice).__name__} of run {getattr(notice, 'run', '?')!r} must follow "
                f"the reply to request {waiting!r}"
            )
        profile = self.profile
        frames: list[WireFrame]
        if isinstance(notice, RunOutput):
            self._check_seq(notice.run, notice.seq)
            run, seq, stream, data = notice.run, notice.seq, notice.stream, notice.data
            if self.binary_output:
                frames = [BinaryParts(binary_header(run, seq, stream), data)]
            elif profile.output_lines:
                frames = list(encode_output_lines(run, seq, stream, data, max_frame))
            else:
                frames = [encode_output_utf8(run, seq, stream, data, max_frame)]
            self._next_seq[notice.run] = notice.seq + 1
            return frames
        if isinstance(notice, _SEQUENCED):
            self._check_seq(notice.run, notice.seq)
        if isinstance(notice, Connected) and profile.greeting:
            notice = attrs.evolve(notice, protocol=profile.name)
        frames = [encode_message(self._status_nulls(notice_message(notice)))]
        if isinstance(notice, RunCompleted):
            answered = notice.run in self._canceled
            if profile.announce_cancel and (answered or notice.completion.status == "canceled"):
                frames.insert(0, encode_message(self._status_nulls(canceled_message(notice))))
            self._canceled.discard(notice.run)
            self._next_seq.pop(notice.run, None)
            self._closed.add(notice.run)
        elif isinstance(notice, _SEQUENCED):
            self._next_seq[notice.run] = notice.seq + 1
        return frames

    def _status_nulls(self, message: Notification) -> Notification:
        # The original's status notifications were its StatusUpdate model whole: every field
        # there, null where it had no value (profile.py).
        if not self.profile.status_nulls or message.method not in _STATUS_METHODS:
            return message
        missing = {key: None for key in _STATUS_NULLS if key not in message.params}
        return Notification(message.method, {**message.params, **missing})

    def attach_run(self, run: str, next_seq: int) -> None:
        """Let events of `run` flow again, the next one carrying `next_seq` (for attach)."""
        self._closed.discard(run)
        self._next_seq[run] = next_seq

    def detach_run(self, run: str) -> None:
        """Send no more events of `run` until `attach_run`."""
        self._next_seq.pop(run, None)
        self._canceled.discard(run)
        self._closed.add(run)

    def _check_seq(self, run: str, seq: int) -> None:
        if run in self._closed:
            raise LocalProtocolError(f"run {run!r} has completed or is detached")
        expected = self._next_seq.get(run, 1)
        if seq != expected:
            raise LocalProtocolError(f"run {run!r}: seq {seq}, expected {expected}")
