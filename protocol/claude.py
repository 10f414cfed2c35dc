"""Claude Code runs without I/O: the `claude` request, its argv, and stream-json to typed events.

Theory of operation: a `claude` request (ClaudeParams) is validated like every other params
class and turned by `build_argv` into `claude -p ... --output-format stream-json --verbose`
with the prompt after `--`, so a prompt can never be read as a flag.  The CLI writes one JSON
object per line on stdout; `StreamJsonParser` takes those bytes in whatever pieces they come
and hands back typed events (`parse_line` does one line).  The parser never raises: a line
that is not JSON, not an object or too long becomes `Unparsed`, an event type it does not know
becomes `Other` carrying the whole object.  `event_params` is the events' wire form (the
params of a `claude.event` notification), `result_summary` the `claude` object of a Claude
run's completion.
"""

import re
from typing import Any, ClassVar, Literal, TypeAlias

import attrs
import orjson

from cc_executor.protocol.messages import JSON
from cc_executor.protocol.params import ParamError

# Notification carrying one typed event of a Claude run (not sequenced; process.output still
# carries the raw bytes with their seq).
CLAUDE_EVENT = "claude.event"

_UUID = re.compile(
    r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)

IdleAction = Literal["report", "interrupt", "cancel"]
PermissionMode = Literal["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"]


def _check_text(where: str, value: str) -> None:
    if "\0" in value:
        raise ParamError(where, "must not contain a NUL byte")


def _check_tools(where: str, tools: tuple[str, ...]) -> None:
    for i, tool in enumerate(tools):
        _check_text(f"{where}[{i}]", tool)
        if not tool.strip() or tool.startswith("-"):
            raise ParamError(f"{where}[{i}]", "must name a tool (and not start with '-')")


def _check_uuid(where: str, value: str | None) -> None:
    if value is not None and not _UUID.match(value):
        raise ParamError(where, "must be a Claude session id (a UUID)")


def _optional_positive(_: object, field: "attrs.Attribute[Any]", value: float | None) -> None:
    if value is not None and not (value > 0 and value != float("inf")):
        raise ParamError(f".{field.name}", "must be a positive number of seconds")


def _optional_positive_int(_: object, field: "attrs.Attribute[Any]", value: int | None) -> None:
    if value is not None and value <= 0:
        raise ParamError(f".{field.name}", "must be a positive integer")


@attrs.frozen
class ClaudeParams:
    """Start a Claude Code run (`claude -p`), its stream-json parsed into typed events.

    With `input: "text"` the prompt is an argument and stdin is /dev/null; with
    `input: "stream-json"` stdin is a pipe the client writes stream-json user messages to
    (`stdin` method) and `prompt` must be absent.
    """

    prompt: str | None = None
    input: Literal["text", "stream-json"] = "text"
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    model: str | None = None
    max_turns: int | None = attrs.field(default=None, validator=_optional_positive_int)
    resume: str | None = None
    continue_session: bool = False
    session_id: str | None = None
    fork_session: bool = False
    permission_mode: PermissionMode | None = None
    dangerously_skip_permissions: bool = False
    include_partial_messages: bool = False
    extra_args: tuple[str, ...] = ()
    cwd: str | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    idle_timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    idle_action: IdleAction | None = None

    def __attrs_post_init__(self) -> None:
        if self.input == "text":
            if self.prompt is None or not self.prompt.strip():
                raise ParamError(".prompt", "is required (and not empty) with input 'text'")
        elif self.prompt is not None:
            raise ParamError(".prompt", "not allowed with input 'stream-json': write to stdin")
        if self.prompt is not None:
            _check_text(".prompt", self.prompt)
        _check_tools(".allowed_tools", self.allowed_tools)
        _check_tools(".disallowed_tools", self.disallowed_tools)
        for where, text in ((".model", self.model), (".cwd", self.cwd)):
            if text is not None:
                _check_text(where, text)
                if not text:
                    raise ParamError(where, "must not be empty")
        _check_uuid(".resume", self.resume)
        _check_uuid(".session_id", self.session_id)
        if self.resume is not None and self.continue_session:
            raise ParamError("", "resume and continue_session exclude each other")
        resuming = self.resume is not None or self.continue_session
        if self.fork_session and not resuming:
            raise ParamError(".fork_session", "only with resume or continue_session")
        if self.session_id is not None and resuming and not self.fork_session:
            raise ParamError(".session_id", "with resume or continue_session needs fork_session")
        for i, arg in enumerate(self.extra_args):
            _check_text(f".extra_args[{i}]", arg)
            if arg == "--":
                raise ParamError(f".extra_args[{i}]", "'--' is placed by the daemon")
        for key, value in self.env.items():
            where = f".env[{key!r}]"
            if not key or "=" in key:
                raise ParamError(where, "a variable name must be non-empty and without '='")
            _check_text(where, key)
            _check_text(where, value)

    @property
    def claude_session(self) -> str | None:
        """The Claude session this run will write to, when known before it starts."""
        if self.fork_session:
            return self.session_id
        return self.resume or self.session_id


def build_argv(binary: str, params: ClaudeParams) -> tuple[str, ...]:
    """`claude -p ... --output-format stream-json --verbose [flags] -- <prompt>`."""
    argv = [binary, "-p", "--output-format", "stream-json", "--verbose"]
    if params.input == "stream-json":
        argv += ["--input-format", "stream-json"]
    if params.include_partial_messages:
        argv.append("--include-partial-messages")
    if params.model is not None:
        argv += ["--model", params.model]
    if params.max_turns is not None:
        argv += ["--max-turns", str(params.max_turns)]
    if params.resume is not None:
        argv += ["--resume", params.resume]
    if params.continue_session:
        argv.append("--continue")
    if params.fork_session:
        argv.append("--fork-session")
    if params.session_id is not None:
        argv += ["--session-id", params.session_id]
    if params.permission_mode is not None:
        argv += ["--permission-mode", params.permission_mode]
    if params.dangerously_skip_permissions:
        argv.append("--dangerously-skip-permissions")
    # The tool lists are variadic options: each is followed by another option or by `--`.
    if params.allowed_tools:
        argv += ["--allowedTools", *params.allowed_tools]
    if params.disallowed_tools:
        argv += ["--disallowedTools", *params.disallowed_tools]
    argv += params.extra_args
    if params.prompt is not None:
        argv += ["--", params.prompt]
    return tuple(argv)


# -- typed events -------------------------------------------------------------------------


@attrs.frozen
class Init:
    """`system/init`: the run's Claude session id, model, tools and settings."""

    kind: ClassVar[str] = "init"
    session_id: str | None
    model: str | None
    cwd: str | None
    tools: tuple[str, ...]
    permission_mode: str | None
    claude_code_version: str | None


@attrs.frozen
class AssistantText:
    """A text block of an assistant message."""

    kind: ClassVar[str] = "text"
    text: str
    message_id: str | None
    parent_tool_use_id: str | None


@attrs.frozen
class Thinking:
    """A thinking block of an assistant message."""

    kind: ClassVar[str] = "thinking"
    thinking: str
    message_id: str | None
    parent_tool_use_id: str | None


@attrs.frozen
class ToolUse:
    """The assistant calls a tool."""

    kind: ClassVar[str] = "tool_use"
    id: str | None
    name: str | None
    input: Any
    message_id: str | None
    parent_tool_use_id: str | None


@attrs.frozen
class ToolResult:
    """A tool's result, as the CLI hands it back to the model."""

    kind: ClassVar[str] = "tool_result"
    tool_use_id: str | None
    content: Any
    is_error: bool
    parent_tool_use_id: str | None


@attrs.frozen
class UserText:
    """A text block of a user message (e.g. replayed stream-json input)."""

    kind: ClassVar[str] = "user_text"
    text: str
    parent_tool_use_id: str | None


@attrs.frozen
class Partial:
    """`stream_event` (with --include-partial-messages): one raw streaming API event."""

    kind: ClassVar[str] = "partial"
    event: Any
    parent_tool_use_id: str | None


@attrs.frozen
class Status:
    """`system/status`: what the CLI is doing (e.g. "requesting")."""

    kind: ClassVar[str] = "status"
    status: Any


@attrs.frozen
class ApiRetry:
    """`system/api_retry`: the API failed and the CLI will try again."""

    kind: ClassVar[str] = "api_retry"
    attempt: Any
    max_retries: Any
    retry_delay_ms: Any
    error_status: Any
    error: Any


@attrs.frozen
class RateLimit:
    """`rate_limit_event`: the account's rate-limit state."""

    kind: ClassVar[str] = "rate_limit"
    info: Any


@attrs.frozen
class Result:
    """The run's final `result` line: how it ended, what it cost."""

    kind: ClassVar[str] = "result"
    subtype: str | None
    is_error: bool
    result: str | None
    session_id: str | None
    total_cost_usd: Any
    usage: Any
    num_turns: Any
    duration_ms: Any
    duration_api_ms: Any
    terminal_reason: Any
    api_error_status: Any
    stop_reason: Any
    permission_denials: Any

    @property
    def failed(self) -> bool:
        """The CLI says the run failed (exit code 0 notwithstanding)."""
        return self.is_error or self.subtype != "success"


@attrs.frozen
class Other:
    """A line of a type this parser does not know: passed through whole."""

    kind: ClassVar[str] = "other"
    event_type: str | None
    subtype: str | None
    raw: Any


@attrs.frozen
class Unparsed:
    """A line that is not a JSON object (or is longer than the parser keeps)."""

    kind: ClassVar[str] = "unparsed"
    reason: str
    size: int
    text: str | None


ClaudeEvent: TypeAlias = (
    Init
    | AssistantText
    | Thinking
    | ToolUse
    | ToolResult
    | UserText
    | Partial
    | Status
    | ApiRetry
    | RateLimit
    | Result
    | Other
    | Unparsed
)


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
            return events
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
    }
