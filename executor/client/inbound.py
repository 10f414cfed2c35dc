"""Server frames to typed client messages, without I/O (the client's half of the codec).

The server's half (`cc_executor.protocol.decode`) reads requests; this reads what a daemon
sends back: replies, run events and the few other notifications. A frame that breaks the
protocol raises `ProtocolViolation`: a daemon that does so has a bug, and the connection
cannot be trusted any further.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, TypeAlias

import attrs
import orjson

from cc_executor.executor.client.errors import ProtocolViolation, ServerError, server_error
from cc_executor.executor.client.events import (
    Completed,
    DaemonStatus,
    Gap,
    Greeting,
    Output,
    Paused,
    Resumed,
    RunEvent,
    RunStatus,
    ShutdownNotice,
)
from cc_executor.protocol import (
    CONNECTED,
    PROCESS_COMPLETED,
    PROCESS_GAP,
    PROCESS_OUTPUT,
    PROCESS_PAUSED,
    PROCESS_RESUMED,
)

SHUTDOWN = "shutdown"  # the daemon is draining (no constant in protocol/ names it yet)


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
class Connected:
    """The greeting."""

    greeting: Greeting


@attrs.frozen
class Shutdown:
    """The daemon's `shutdown` notification."""

    notice: ShutdownNotice


@attrs.frozen
class Other:
    """Any other notification (`process.started`, ones a newer daemon adds)."""

    method: str
    params: dict[str, Any]


Inbound: TypeAlias = Result | Failure | Event | Connected | Shutdown | Other


def parse_frame(text: str | bytes) -> list[Inbound]:
    """One frame (a message or a batch of replies) as messages, in order."""
    if isinstance(text, bytes):
        raise ProtocolViolation("the server sent a binary frame")
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
        if method == PROCESS_OUTPUT:
            return Event(_output(params))
        if method == PROCESS_PAUSED:
            return Event(Paused(params["run"], params["seq"]))
        if method == PROCESS_RESUMED:
            return Event(Resumed(params["run"], params["seq"]))
        if method == PROCESS_COMPLETED:
            return Event(completed(params))
        if method == PROCESS_GAP:
            return Event(Gap(params["run"], params["seq"], str(params.get("reason", ""))))
        if method == CONNECTED:
            return Connected(greeting(params))
        if method == SHUTDOWN:
            grace = params.get("grace")
            return Shutdown(ShutdownNotice(str(params.get("reason", "")), _seconds(grace)))
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ProtocolViolation(f"malformed {method}: {exc!r}") from None
    return Other(method, params)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number of seconds: {value!r}")
    return float(value)


def _output(params: Mapping[str, Any]) -> Output:
    data = params["data"]
    raw = (
        base64.b64decode(data, validate=True)
        if params.get("encoding") == "base64"
        else data.encode("utf-8")
    )
    stream = params["type"]
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"unknown stream {stream!r}")
    return Output(params["run"], params["seq"], stream, raw)


def completed(params: Mapping[str, Any]) -> Completed:
    """A `process.completed` (or a completed run's status) as a `Completed`."""
    return Completed(
        run=params["run"],
        seq=params.get("seq", params.get("last_seq", 0)),
        outcome=params["outcome"],
        status=params["status"],
        exit_code=params.get("exit_code"),
        signal=params.get("signal"),
        reason=params.get("reason"),
        rung=params.get("rung"),
        timeout=params.get("timeout"),
        execution_time=params.get("execution_time"),
        stdout_bytes=params.get("stdout_bytes", 0),
        stderr_bytes=params.get("stderr_bytes", 0),
    )


def greeting(params: Mapping[str, Any]) -> Greeting:
    """The `connected` params as a `Greeting`."""
    return Greeting(
        session_id=params.get("session_id", ""),
        server=params.get("server", ""),
        version=params.get("version", ""),
        capabilities=frozenset(params.get("capabilities", ())),
        limits=dict(params.get("limits", {})),
    )


def run_status(raw: dict[str, Any]) -> RunStatus:
    """A `status {run}` result or an element of `list`."""
    return RunStatus(
        run=raw["run"],
        state=raw["state"],
        pid=raw.get("pid"),
        argv=tuple(raw.get("argv", ())),
        elapsed=float(raw.get("elapsed", 0.0)),
        stdout_bytes=raw.get("stdout_bytes", 0),
        stderr_bytes=raw.get("stderr_bytes", 0),
        last_seq=raw.get("last_seq", 0),
        outcome=raw.get("outcome"),
        exit_code=raw.get("exit_code"),
        durable=bool(raw.get("durable", False)),
        signal=raw.get("signal"),
        started=_seconds(raw.get("started")),
        raw=raw,
    )


def daemon_status(raw: dict[str, Any]) -> DaemonStatus:
    """A `status {}` result."""
    return DaemonStatus(
        server=raw.get("server", ""),
        version=raw.get("version", ""),
        uptime=float(raw.get("uptime", 0.0)),
        connections=raw.get("connections", 0),
        live_runs=raw.get("live_runs", 0),
        runs_started=raw.get("runs_started", 0),
        draining=bool(raw.get("draining", False)),
        raw=raw,
    )
