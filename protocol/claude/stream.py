"""Stream-json bytes to typed events, and their wire form.

Theory of operation: the CLI writes one JSON object per line on stdout; `StreamJsonParser`
takes those bytes in whatever pieces they come and hands back typed events (`parse_line` does
one line).  The parser never raises: a line that is not JSON, not an object or too long becomes
`Unparsed`, an event type it does not know becomes `Other` carrying the whole object.
`event_params` is the events' wire form (the params of a `claude.event` notification),
`result_summary` the `claude` object of a Claude run's completion.
"""

from typing import Any

import attrs
import orjson

from cc_executor.protocol.claude.events import (
    ApiRetry,
    AssistantText,
    ClaudeEvent,
    ControlCancel,
    ControlRequest,
    ControlResponse,
    Init,
    Other,
    Partial,
    RateLimit,
    Replayed,
    Result,
    Status,
    Thinking,
    ToolResult,
    ToolUse,
    Unparsed,
    UserText,
)
from cc_executor.protocol.messages import JSON


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _content_events(obj: dict[str, Any], role: str) -> list[ClaudeEvent] | None:
    message = obj.get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    parent = _str(obj.get("parent_tool_use_id"))
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return None
    message_id = _str(message.get("id"))
    events: list[ClaudeEvent] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            if role == "assistant":
                events.append(AssistantText(block["text"], message_id, parent))
            else:
                events.append(UserText(block["text"], parent))
        elif kind == "thinking" and role == "assistant":
            events.append(Thinking(str(block.get("thinking", "")), message_id, parent))
        elif kind == "tool_use" and role == "assistant":
            events.append(
                ToolUse(
                    _str(block.get("id")),
                    _str(block.get("name")),
                    block.get("input"),
                    message_id,
                    parent,
                )
            )
        elif kind == "tool_result":
            events.append(
                ToolResult(
                    _str(block.get("tool_use_id")),
                    block.get("content"),
                    block.get("is_error") is True,
                    parent,
                )
            )
        else:
            events.append(Other(obj.get("type"), kind if isinstance(kind, str) else None, block))
    return events


def _object_events(obj: dict[str, Any]) -> list[ClaudeEvent]:
    kind = obj.get("type")
    subtype = _str(obj.get("subtype"))
    if kind == "system" and subtype == "init":
        tools = obj.get("tools")
        return [
            Init(
                session_id=_str(obj.get("session_id")),
                model=_str(obj.get("model")),
                cwd=_str(obj.get("cwd")),
                tools=tuple(t for t in tools if isinstance(t, str))
                if isinstance(tools, list)
                else (),
                permission_mode=_str(obj.get("permissionMode")),
                claude_code_version=_str(obj.get("claude_code_version")),
            )
        ]
    if kind == "system" and subtype == "status":
        return [Status(obj.get("status"))]
    if kind == "system" and subtype == "api_retry":
        return [
            ApiRetry(
                obj.get("attempt"),
                obj.get("max_retries"),
                obj.get("retry_delay_ms"),
                obj.get("error_status"),
                obj.get("error"),
            )
        ]
    if kind in ("assistant", "user"):
        events = _content_events(obj, kind)
        if events is not None:
            if kind == "user" and obj.get("isReplay") is True:
                events.insert(0, Replayed(_str(obj.get("uuid"))))
            return events
    if kind in ("control_request", "control_response", "control_cancel_request"):
        return [_control_event(kind, obj)]
    if kind == "stream_event":
        return [Partial(obj.get("event"), _str(obj.get("parent_tool_use_id")))]
    if kind == "rate_limit_event":
        return [RateLimit(obj.get("rate_limit_info", obj))]
    if kind == "result":
        return [
            Result(
                subtype=subtype,
                is_error=obj.get("is_error") is True,
                result=_str(obj.get("result")),
                session_id=_str(obj.get("session_id")),
                total_cost_usd=obj.get("total_cost_usd"),
                usage=obj.get("usage"),
                num_turns=obj.get("num_turns"),
                duration_ms=obj.get("duration_ms"),
                duration_api_ms=obj.get("duration_api_ms"),
                terminal_reason=obj.get("terminal_reason"),
                api_error_status=obj.get("api_error_status"),
                stop_reason=obj.get("stop_reason"),
                permission_denials=obj.get("permission_denials"),
            )
        ]
    return [Other(kind if isinstance(kind, str) else None, subtype, obj)]


def _control_event(kind: str, obj: dict[str, Any]) -> ClaudeEvent:
    if kind == "control_cancel_request":
        return ControlCancel(_str(obj.get("request_id")))
    if kind == "control_request":
        request = obj.get("request")
        subtype = request.get("subtype") if isinstance(request, dict) else None
        return ControlRequest(_str(obj.get("request_id")), _str(subtype), request)
    response = obj.get("response")
    if not isinstance(response, dict):
        return ControlResponse(None, None, None, None)
    return ControlResponse(
        _str(response.get("request_id")),
        _str(response.get("subtype")),
        response.get("response"),
        _str(response.get("error")),
    )


# How much of an unparsable line an Unparsed event quotes.
UNPARSED_QUOTE = 200


def parse_line(line: bytes) -> list[ClaudeEvent]:
    """The typed events of one stream-json line (without its newline); never raises."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        text = line[:UNPARSED_QUOTE].decode("utf-8", "replace")
        return [Unparsed("not JSON", len(line), text)]
    if not isinstance(obj, dict):
        return [Unparsed("not a JSON object", len(line), None)]
    return _object_events(obj)


class StreamJsonParser:
    """Bytes in (any split), typed events out; a line over `max_line` bytes is skipped."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._buffer = bytearray()
        self._skipping = 0  # bytes of an over-long line dropped so far
        self.lines = 0

    def feed(self, data: bytes) -> list[ClaudeEvent]:
        events: list[ClaudeEvent] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return events
            events += self._line(data[start:end])
            start = end + 1

    def close(self) -> list[ClaudeEvent]:
        """The events of a last line that had no newline."""
        if not self._buffer and not self._skipping:
            return []
        return self._line(b"")

    def _keep(self, piece: bytes) -> None:
        if self._skipping:
            self._skipping += len(piece)
        elif len(self._buffer) + len(piece) > self._max_line:
            self._skipping = len(self._buffer) + len(piece)
            self._buffer.clear()
        else:
            self._buffer += piece

    def _line(self, tail: bytes) -> list[ClaudeEvent]:
        if self._skipping or len(self._buffer) + len(tail) > self._max_line:
            size = self._skipping + len(self._buffer) + len(tail)
            self._skipping = 0
            self._buffer.clear()
            self.lines += 1
            return [Unparsed("line too long", size, None)]
        line = bytes(self._buffer + tail) if self._buffer else tail
        self._buffer.clear()
        if not line.strip():
            return []
        self.lines += 1
        return parse_line(line)


def event_params(event: ClaudeEvent) -> dict[str, JSON]:
    """The wire form of an event: `{"type": <kind>, ...its fields}`."""
    fields: dict[str, JSON] = attrs.asdict(event, recurse=False)
    if isinstance(event, Init):
        fields["tools"] = list(event.tools)
    return {"type": event.kind, **fields}


def result_summary(result: Result | None, session_id: str | None) -> dict[str, JSON]:
    """The `claude` object of a Claude run's completion."""
    if result is None:
        return {"has_result": False, "session_id": session_id}
    return {
        "has_result": True,
        "subtype": result.subtype,
        "is_error": result.failed,
        "session_id": result.session_id or session_id,
        "cost_usd": result.total_cost_usd,
        "usage": result.usage,
        "num_turns": result.num_turns,
        "duration_ms": result.duration_ms,
        "duration_api_ms": result.duration_api_ms,
        "terminal_reason": result.terminal_reason,
        "api_error_status": result.api_error_status,
        "text": result.result,
        "permission_denials": result.permission_denials,
    }
