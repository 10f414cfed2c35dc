"""The MCP protocol state of one client connection, as seen by the server.

Theory of operation: every frame the MCP session sends is produced here, which is how the
rules that need memory are enforced (violations are our bugs: LocalProtocolError):

- Each request id is answered at most once, and only ids the client sent are answered.
  `receive` makes the id of every `McpRequest` pending; `respond`, `respond_error` and
  `abandon` (a cancelled request, which gets no answer) remove it.  A request whose id is
  still pending is refused with -32600, id null and `data.duplicate_id`.
- Progress goes only to tokens the client issued (the `_meta.progressToken` of a request that
  is still pending), with strictly increasing `progress`, and never after the response: the
  token dies with its request's answer.
- Modern-era results carry `resultType`; the era of each pending request is remembered.

Memory: one entry per pending request.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from cc_executor.protocol.codec import encode_message
from cc_executor.protocol.errors import InvalidRequest, JsonRpcError, LocalProtocolError
from cc_executor.protocol.mcp import (
    PROGRESS,
    Era,
    McpEvent,
    McpInvalid,
    McpRequest,
    ProgressToken,
    complete,
    decode_mcp,
    refuse,
)
from cc_executor.protocol.messages import JSON, ErrorResponse, Id, Notification, Response


@attrs.define
class _Pending:
    era: Era
    token: ProgressToken | None
    progress: float | None = None  # the last progress sent for the token


class McpConnection:
    """Sans-I/O MCP state for one connection: text in, events out; answers in, text out."""

    def __init__(self) -> None:
        self._pending: dict[Id, _Pending] = {}
        self._tokens: dict[ProgressToken, Id] = {}  # live progress token -> its request
        self.initialized_version: str | None = None  # the handshake's negotiated version

    @property
    def pending_ids(self) -> frozenset[Id]:
        return frozenset(self._pending)

    def receive(self, text: str) -> McpEvent:
        """Read one text frame; never raises for anything the peer sends."""
        event = decode_mcp(text)
        if not isinstance(event, McpRequest):
            return event
        if event.id in self._pending:
            duplicate = InvalidRequest("Invalid Request: duplicate id", {"duplicate_id": event.id})
            return refuse(None, duplicate)
        token = event.progress_token
        if token is not None and token in self._tokens:
            # A token names one request's progress; a second live use would be ambiguous.
            token = None
        self._pending[event.id] = _Pending(event.era, token)
        if token is not None:
            self._tokens[token] = event.id
        return event

    # -- answers -----------------------------------------------------------------------

    def respond(self, id_: Id, result: Mapping[str, JSON]) -> str:
        """Answer request `id_` (modern requests get `resultType` "complete" unless set)."""
        pending = self._take(id_)
        return encode_message(Response(id_, complete(result, pending.era)))

    def respond_error(self, id_: Id, exc: JsonRpcError) -> str:
        """Answer request `id_` with the error `exc` carries."""
        self._take(id_)
        return encode_message(ErrorResponse(id_, exc.error))

    def abandon(self, id_: Id) -> None:
        """Forget a request the client cancelled: it gets no answer and no more progress."""
        if id_ in self._pending:
            self._take(id_)

    def encode_invalid(self, event: McpInvalid) -> str:
        """The frame refusing an invalid message (its id was never pending)."""
        return encode_message(event.reply)

    def _take(self, id_: Id) -> _Pending:
        pending = self._pending.pop(id_, None)
        if pending is None:
            raise LocalProtocolError(f"id {id_!r} is not pending: answered already or never sent")
        if pending.token is not None:
            del self._tokens[pending.token]
        return pending

    # -- notifications -----------------------------------------------------------------

    def progress_token(self, id_: Id) -> ProgressToken | None:
        """The live progress token of pending request `id_`, if it has one."""
        pending = self._pending.get(id_)
        return None if pending is None else pending.token

    def progress(self, token: ProgressToken, progress: float, message: str | None = None) -> str:
        """A `notifications/progress` for a live token, `progress` above the last one."""
        id_ = self._tokens.get(token)
        if id_ is None:
            raise LocalProtocolError(f"progress token {token!r} is not live")
        pending = self._pending[id_]
        if pending.progress is not None and not progress > pending.progress:
            raise LocalProtocolError(
                f"progress {progress} does not increase (last {pending.progress})"
            )
        pending.progress = progress
        params: dict[str, JSON] = {"progressToken": token, "progress": progress}
        if message is not None:
            params["message"] = message
        return encode_message(Notification(PROGRESS, params))

    def next_progress(self, token: ProgressToken, wanted: float) -> float:
        """`wanted`, or just above the last progress sent for `token` if it is not above."""
        id_ = self._tokens.get(token)
        last = None if id_ is None else self._pending[id_].progress
        if last is not None and not wanted > last:
            return last + 0.001
        return wanted
