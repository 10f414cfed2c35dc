"""The MCP tools for live Claude sessions: their schemas, and their arguments as typed objects.

Each tool takes exactly the params of the JSON-RPC method it stands for — `claude_start` the
`claude` method's with `session: true`, `claude_send` those of `claude.send`, and so on —
structured by the same strict converter into the same params classes
(protocol/claude/session.py), plus `wait` where a call may wait for a turn; so MCP and
JSON-RPC cannot drift apart. `claude_close` ends a session; `claude_session` reads a
session's status, its pending permission requests and the text of its turns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from cc_executor.protocol.claude import (
    ClaudeCloseParams,
    ClaudeInterruptParams,
    ClaudeParams,
    ClaudePermissionParams,
    ClaudeSendParams,
)
from cc_executor.protocol.mcp_schema import (
    CLAUDE_PROPERTIES,
    OBJECT,
    WAIT,
    ToolSpec,
    pop_bool,
    structure,
)
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.params import ParamError


@attrs.frozen
class ClaudeStartArgs:
    """`claude_start`: a session run; with a prompt and `wait`, the call waits for turn 1."""

    params: ClaudeParams
    wait: bool


@attrs.frozen
class ClaudeSendArgs:
    """`claude_send`: a message; with `wait`, the call waits for the turn that takes it."""

    params: ClaudeSendParams
    wait: bool


@attrs.frozen
class ClaudeInterruptArgs:
    params: ClaudeInterruptParams


@attrs.frozen
class ClaudePermissionArgs:
    params: ClaudePermissionParams


@attrs.frozen
class ClaudeCloseArgs:
    params: ClaudeCloseParams


def _non_negative(_: object, field: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ParamError(f".{field.name}", "must be >= 0")


@attrs.frozen
class ClaudeSessionArgs:
    """`claude_session`: a session's status, pending requests and its turns after `from_turn`."""

    run: str
    from_turn: int = attrs.field(default=0, validator=_non_negative)


SessionToolArgs = (
    ClaudeStartArgs
    | ClaudeSendArgs
    | ClaudeInterruptArgs
    | ClaudePermissionArgs
    | ClaudeCloseArgs
    | ClaudeSessionArgs
)
SESSION_TOOL_ARGS = (
    ClaudeStartArgs,
    ClaudeSendArgs,
    ClaudeInterruptArgs,
    ClaudePermissionArgs,
    ClaudeCloseArgs,
    ClaudeSessionArgs,
)


def parse_session_arguments(tool: str, raw: dict[str, JSON]) -> SessionToolArgs | None:
    """The typed arguments of a session tool (None: `tool` is not one).

    Raises:
        InvalidParams: arguments the params class refuses (`data`: the problems).
    """
    match tool:
        case "claude_start":
            wait = pop_bool(raw, "wait", True)
            return ClaudeStartArgs(structure({**raw, "session": True}, ClaudeParams), wait)
        case "claude_send":
            wait = pop_bool(raw, "wait", True)
            return ClaudeSendArgs(structure(raw, ClaudeSendParams), wait)
        case "claude_interrupt":
            return ClaudeInterruptArgs(structure(raw, ClaudeInterruptParams))
        case "claude_permission":
            return ClaudePermissionArgs(structure(raw, ClaudePermissionParams))
        case "claude_close":
            return ClaudeCloseArgs(structure(raw, ClaudeCloseParams))
        case "claude_session":
            return structure(raw, ClaudeSessionArgs)
    return None


# -- schemas ----------------------------------------------------------------------------------

_RUN: dict[str, JSON] = {"type": "string", "description": "The session's run id."}

_START_INPUT: dict[str, JSON] = {
    "type": "object",
    "properties": {
        **CLAUDE_PROPERTIES,
        "prompt": {"type": "string", "description": "The first message (optional)."},
        "include_partial_messages": {"type": "boolean"},
        "wait": {
            **WAIT,
            "description": "With a prompt: wait for the first turn to end (progress carries "
            "its text). False, or no prompt: return the session's run id at once.",
        },
    },
    "additionalProperties": False,
}

_SEND_INPUT: dict[str, JSON] = {
    "type": "object",
    "properties": {
        "run": _RUN,
        "content": {
            "description": "The message: text, or an array of content blocks.",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
        },
        "id": {"type": "string", "description": "Your id for the message (default: m-<n>)."},
        "wait": {
            **WAIT,
            "description": "Wait for the turn that takes the message to end (progress carries "
            "the text as it is written). False: return once the CLI has the message.",
        },
    },
    "required": ["run", "content"],
    "additionalProperties": False,
}

_PERMISSION_INPUT: dict[str, JSON] = {
    "type": "object",
    "properties": {
        "run": _RUN,
        "request": {"type": "string", "description": "The request id (claude_session lists)."},
        "behavior": {"enum": ["allow", "deny"]},
        "updated_input": {"type": "object", "description": "With allow: the input to use."},
        "message": {"type": "string", "description": "With deny: why, for Claude."},
    },
    "required": ["run", "request", "behavior"],
    "additionalProperties": False,
}

_SESSION_OUTPUT: dict[str, JSON] = {
    "type": "object",
    "properties": {
        "run": {"type": "string"},
        "state": {"type": "string"},
        "turn": {"type": ["integer", "null"]},
        "pending": {"type": "array"},
    },
    "required": ["run", "state"],
}
_TURN_OUTPUT: dict[str, JSON] = {
    "type": "object",
    "properties": {
        "run": {"type": "string"},
        "message": {"type": "string"},
        "disposition": {"enum": ["started", "queued"]},
        "state": {"type": "string"},
        "turn": {"type": "integer"},
        "text": {"type": "string"},
        "interrupted": {"type": "boolean"},
        "result": {"type": "object"},
    },
    "required": ["run", "state"],
}

SESSION_TOOLS: Final[tuple[ToolSpec, ...]] = (
    ToolSpec(
        "claude_start",
        "Start a Claude session",
        "Start a live Claude Code session: one CLI process for many turns, steered with "
        "claude_send, claude_interrupt and claude_permission. Tools Claude wants to use that "
        "its rules do not allow are asked as permission requests (claude_session lists them).",
        _START_INPUT,
        _SESSION_OUTPUT,
        "forbidden",
        False,
    ),
    ToolSpec(
        "claude_send",
        "Send a message to a Claude session",
        "Send a user message. It starts a turn when the session is idle; while a turn runs it "
        "is taken by that turn or the next. Waits for that turn's end by default (use task "
        "mode for long turns); the result has the turn's text, result and cost.",
        _SEND_INPUT,
        _TURN_OUTPUT,
        "optional",
        False,
    ),
    ToolSpec(
        "claude_interrupt",
        "Interrupt a Claude session's turn",
        "Stop the running turn; the session stays and takes the next message.",
        {
            "type": "object",
            "properties": {"run": _RUN},
            "required": ["run"],
            "additionalProperties": False,
        },
        OBJECT,
        "forbidden",
        False,
    ),
    ToolSpec(
        "claude_permission",
        "Answer a permission request",
        "Allow or deny a tool use a Claude session asks for. The first answer wins; a later "
        "one is an error naming who answered.",
        _PERMISSION_INPUT,
        OBJECT,
        "forbidden",
        False,
    ),
    ToolSpec(
        "claude_close",
        "Close a Claude session",
        "End the session: its input is closed, the CLI exits (or is ended after the daemon's "
        "close grace); answers once it is over, with how it ended.",
        {
            "type": "object",
            "properties": {"run": _RUN},
            "required": ["run"],
            "additionalProperties": False,
        },
        OBJECT,
        "forbidden",
        False,
    ),
    ToolSpec(
        "claude_session",
        "Read a Claude session",
        "A session's state (idle, running, requires_action, paused), cost and tokens, its "
        "pending permission requests, and the text and result of its turns after from_turn.",
        {
            "type": "object",
            "properties": {
                "run": _RUN,
                "from_turn": {"type": "integer", "minimum": 0, "default": 0},
            },
            "required": ["run"],
            "additionalProperties": False,
        },
        _SESSION_OUTPUT,
        "forbidden",
        True,
    ),
)

SESSION_INPUTS: Final[Mapping[str, dict[str, JSON]]] = {
    spec.name: spec.input_schema for spec in SESSION_TOOLS
}
