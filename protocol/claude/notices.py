"""What a live Claude session tells its clients: turns, messages, permissions, state.

Theory of operation: these notifications are *sequenced* — each carries the run's `seq`, in
the same seq space as `process.output` — so a client attaching to a durable session from any
seq gets every turn boundary and permission request exactly once, in order with the output
that caused it.  The daemon makes them as typed values, the pump numbers them like any other
event of the run, the journal keeps their wire params (`session_params`), and both ends turn
params back into the same classes (`decode_session_notice`), so the live and the replayed
form cannot differ.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import attrs

from cc_executor.protocol.messages import JSON
from cc_executor.protocol.names import CLAUDE_MESSAGE as CLAUDE_MESSAGE
from cc_executor.protocol.names import CLAUDE_PERMISSION_DEADLINE as CLAUDE_PERMISSION_DEADLINE
from cc_executor.protocol.names import CLAUDE_PERMISSION_DECIDED as CLAUDE_PERMISSION_DECIDED
from cc_executor.protocol.names import CLAUDE_PERMISSION_REQUEST as CLAUDE_PERMISSION_REQUEST
from cc_executor.protocol.names import CLAUDE_STATE as CLAUDE_STATE
from cc_executor.protocol.names import CLAUDE_TURN_ENDED as CLAUDE_TURN_ENDED
from cc_executor.protocol.names import CLAUDE_TURN_STARTED as CLAUDE_TURN_STARTED

if TYPE_CHECKING:
    from cc_executor.protocol.claude.events import Result


@attrs.frozen
class ClaudeTurnStarted:
    """A turn began; `messages` are the ids of the messages that started it."""

    method: ClassVar[str] = CLAUDE_TURN_STARTED
    run: str
    seq: int
    turn: int
    messages: tuple[str, ...] = ()


@attrs.frozen
class ClaudeMessageTaken:
    """A message sent while a turn ran was taken by that turn (the CLI replayed it)."""

    method: ClassVar[str] = CLAUDE_MESSAGE
    run: str
    seq: int
    message: str
    turn: int


@attrs.frozen
class ClaudeTurnEnded:
    """A turn ended with its own `result` (`turn_result`); `interrupted` by claude.interrupt."""

    method: ClassVar[str] = CLAUDE_TURN_ENDED
    run: str
    seq: int
    turn: int
    result: Mapping[str, JSON]
    interrupted: bool = False


@attrs.frozen
class ClaudePermissionRequest:
    """The CLI asks before using a tool; answered with `claude.permission` by `expires_at`
    (unix time), else decided by the daemon's default."""

    method: ClassVar[str] = CLAUDE_PERMISSION_REQUEST
    run: str
    seq: int
    request: str
    tool: str | None
    input: JSON
    tool_use_id: str | None
    suggestions: JSON
    expires_at: float | None


@attrs.frozen
class ClaudePermissionDecided:
    """A permission request was decided; `by` says who: ``client:<identity>/<connection>``,
    ``rule:<name>``, ``timeout`` or ``cancelled`` (the CLI withdrew it, or the run ended)."""

    method: ClassVar[str] = CLAUDE_PERMISSION_DECIDED
    run: str
    seq: int
    request: str
    behavior: str
    by: str
    at: float
    message: str | None = None
    updated_input: JSON = None


@attrs.frozen
class ClaudePermissionDeadline:
    """A pending request's deadline moved (the run was PAUSED: its timeout clock stood
    still); `expires_at` (unix time) replaces the one posted before."""

    method: ClassVar[str] = CLAUDE_PERMISSION_DEADLINE
    run: str
    seq: int
    request: str
    expires_at: float


@attrs.frozen
class ClaudeStateChanged:
    """The session's state: idle, running, requires_action (a permission pending), paused."""

    method: ClassVar[str] = CLAUDE_STATE
    run: str
    seq: int
    state: str


SessionNotice: TypeAlias = (
    ClaudeTurnStarted
    | ClaudeMessageTaken
    | ClaudeTurnEnded
    | ClaudePermissionRequest
    | ClaudePermissionDecided
    | ClaudePermissionDeadline
    | ClaudeStateChanged
)
SESSION_NOTICES: Mapping[str, type[SessionNotice]] = {
    cls.method: cls
    for cls in (
        ClaudeTurnStarted,
        ClaudeMessageTaken,
        ClaudeTurnEnded,
        ClaudePermissionRequest,
        ClaudePermissionDecided,
        ClaudePermissionDeadline,
        ClaudeStateChanged,
    )
}


def session_params(notice: SessionNotice) -> dict[str, JSON]:
    """The notification params of `notice` (optional fields left out when None)."""
    params: dict[str, JSON] = {}
    for field in attrs.fields(type(notice)):
        value = getattr(notice, field.name)
        if value is None and field.default is None:
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        params[field.name] = value
    return params


def decode_session_notice(method: str, params: Mapping[str, Any]) -> SessionNotice | None:
    """The notice `params` encode; None for a method that is not a session notification.

    Raises:
        TypeError, KeyError, ValueError: params that do not fit the notification.
    """
    cls = SESSION_NOTICES.get(method)
    if cls is None:
        return None
    # Fields this version does not know are a newer daemon's additions: left out, so that a
    # client keeps working against a daemon that says more (missing ones still raise).
    known = {field.name for field in attrs.fields(cls)}
    values = {name: value for name, value in params.items() if name in known}
    if cls is ClaudeTurnStarted:
        values["messages"] = tuple(values.get("messages", ()))
    values["seq"] = int(values["seq"])
    return cls(**values)


def usage_totals(usage: Any) -> dict[str, int]:
    """The four token counts of a `usage` object (0 where missing)."""
    totals = {}
    for key in (
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ):
        value = usage.get(key) if isinstance(usage, dict) else None
        totals[key] = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return totals


def turn_result(result: "Result", cost_usd: float | None) -> dict[str, JSON]:
    """The `result` of a `claude.turn_ended`: the turn's own `result` line, its own cost
    (`cost_usd`: the CLI's `total_cost_usd` counts the whole process, so the daemon takes
    the difference) and the process's total."""
    return {
        "subtype": result.subtype,
        "is_error": result.failed,
        "result": result.result,
        "cost_usd": cost_usd,
        "total_cost_usd": result.total_cost_usd,
        "usage": result.usage,
        "num_turns": result.num_turns,
        "duration_ms": result.duration_ms,
        "permission_denials": result.permission_denials,
        "terminal_reason": result.terminal_reason,
        "session_id": result.session_id,
    }
