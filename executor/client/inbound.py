"""Server frames to typed client messages, without I/O (the client's half of the codec).

The server's half (`cc_executor.protocol.decode`) reads requests; this reads what a daemon
sends back: replies, run events (a Claude session's notifications among them) and the few
other notifications, decoded by the protocol's own `server_decoding` (and `claude.notices`)
into the same classes the daemon sent. A frame that breaks the
protocol raises `ProtocolViolation`: a daemon that does so has a bug, and the connection
cannot be trusted any further.
"""

from __future__ import annotations

import binascii
from typing import Any, TypeAlias

import attrs
import orjson

from cc_executor.executor.client.errors import ProtocolViolation, ServerError, server_error
from cc_executor.executor.client.events import (
    DaemonStatus,
    Greeting,
    RunEvent,
    RunStatus,
    ShutdownNotice,
)
from cc_executor.protocol.binary import decode_binary_output
from cc_executor.protocol.notices import (
    ClaudeNotice,
    Connected,
    RunCompleted,
    RunGap,
    RunJournalError,
    RunOutput,
    RunPaused,
    RunResumed,
    RunStarted,
    Shutdown,
)
from cc_executor.protocol.server_decoding import (
    decode_daemon_info,
    decode_notice,
    decode_run_info,
)


@attrs.frozen
class Result:
    """A successful reply."""

    id: int | str
    result: dict[str, Any]


@attrs.frozen
class Failure:
    """An error reply; `id` is None when the server could not read our request's id."""

    id: int | str | None
    error: ServerError


@attrs.frozen
class Event:
    """A sequenced run event."""

    event: RunEvent


@attrs.frozen
class Greeted:
    """The greeting."""

    greeting: Greeting


@attrs.frozen
class Draining:
    """The daemon's `shutdown` notification."""

    notice: ShutdownNotice


@attrs.frozen
class Other:
    """Any other notification (`process.started`, ones a newer daemon adds)."""

    method: str
    params: dict[str, Any]


Inbound: TypeAlias = Result | Failure | Event | Greeted | Draining | Other


def parse_frame(text: str | bytes, *, binary: bool = False) -> list[Inbound]:
    """One frame (a message or a batch of replies) as messages, in order.

    With `binary` (the connection negotiated binary output) a binary frame is one run's
    output (protocol/binary.py); without it, a binary frame breaks the protocol.
    """
    if isinstance(text, bytes):
        if not binary:
            raise ProtocolViolation("the server sent a binary frame")
        try:
            return [Event(decode_binary_output(text))]
        except ValueError as exc:
            raise ProtocolViolation(f"malformed binary output frame: {exc}") from None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolViolation(f"the server sent a frame that is not JSON: {exc}") from None
    items = value if isinstance(value, list) else [value]
    return [_message(item) for item in items]


def _message(item: Any) -> Inbound:
    if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
        raise ProtocolViolation(f"not a JSON-RPC 2.0 message: {item!r:.200}")
    if "method" in item:
        params = item.get("params", {})
        if not isinstance(params, dict):
            raise ProtocolViolation(f"notification params are not an object: {item!r:.200}")
        return _notification(item["method"], params)
    if "result" in item:
        return Result(item["id"], item["result"])
    error = item.get("error")
    if not isinstance(error, dict):
        raise ProtocolViolation(f"a reply with neither result nor error: {item!r:.200}")
    return Failure(
        item.get("id"),
        server_error(int(error.get("code", 0)), str(error.get("message", "")), error.get("data")),
    )


def _notification(method: str, params: dict[str, Any]) -> Inbound:
    try:
        notice = decode_notice(method, params)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ProtocolViolation(f"malformed {method}: {exc!r}") from None
    match notice:
        case RunOutput() | RunPaused() | RunResumed() | RunGap() | RunJournalError():
            return Event(notice)
        case RunCompleted():
            return Event(notice)
        case Connected():
            return Greeted(notice)
        case Shutdown():
            return Draining(notice)
        case None | RunStarted() | ClaudeNotice():
            return Other(method, params)
    return Event(notice)  # what is left is a Claude session's notice, sequenced with its output


def run_status(raw: dict[str, Any]) -> RunStatus:
    """A `status {run}` result or an element of `list`."""
    try:
        return decode_run_info(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolViolation(f"malformed run status: {exc!r}") from None


def daemon_status(raw: dict[str, Any]) -> DaemonStatus:
    """A `status {}` result."""
    try:
        return decode_daemon_info(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolViolation(f"malformed daemon status: {exc!r}") from None
