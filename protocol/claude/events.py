"""A Claude run's stream-json, as typed events (one class per kind of line or block).

Each event's `kind` is its wire name (the `type` of a `claude.event` notification). Besides the
CLI's own lines there is `Watchdog`: the daemon's idle watchdog fired on the run.
"""

from typing import Any, ClassVar, TypeAlias

import attrs

# Notification carrying one typed event of a Claude run (not sequenced; process.output still
# carries the raw bytes with their seq).
CLAUDE_EVENT = "claude.event"


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
class Replayed:
    """A user message the CLI took, replayed (`--replay-user-messages`) with its `uuid`."""

    kind: ClassVar[str] = "replayed"
    uuid: str | None


@attrs.frozen
class ControlRequest:
    """`control_request` from the CLI: it asks the host (`can_use_tool`, ...) and waits."""

    kind: ClassVar[str] = "control_request"
    request_id: str | None
    subtype: str | None
    request: Any


@attrs.frozen
class ControlResponse:
    """`control_response`: the CLI's answer to a request of the host's (same request id)."""

    kind: ClassVar[str] = "control_response"
    request_id: str | None
    subtype: str | None  # "success" or "error"
    response: Any
    error: str | None


@attrs.frozen
class ControlCancel:
    """`control_cancel_request`: the CLI withdraws a request it had made (no answer is due)."""

    kind: ClassVar[str] = "control_cancel"
    request_id: str | None


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


@attrs.frozen
class Watchdog:
    """The daemon's idle watchdog fired: no stream-json event for `idle_seconds`."""

    kind: ClassVar[str] = "watchdog"
    idle_seconds: float | None
    action: str


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
    | Replayed
    | ControlRequest
    | ControlResponse
    | ControlCancel
    | Other
    | Unparsed
    | Watchdog
)
