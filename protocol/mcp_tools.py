"""The MCP tools cc-executor offers: their schemas, and their arguments as typed objects.

Arguments go through the same strict converter as every cc-executor method (no coercion,
unknown fields refused); the `execute` and `claude` tools take exactly the params of the
`execute` and `claude` methods, plus `wait` (and `durable` for claude), so the two protocols
cannot drift apart.  A bad argument is not a protocol error in MCP: it becomes a tool result
with `isError: true` (see `mcp.tool_input_error`), so `parse_arguments` returns the problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

from cc_executor.protocol.claude import ClaudeParams
from cc_executor.protocol.errors import InvalidParams
from cc_executor.protocol.mcp import at_least
from cc_executor.protocol.mcp_schema import (
    CLAUDE_PROPERTIES,
    ENV,
    OBJECT,
    SECONDS,
    WAIT,
    TaskSupport,
    ToolSpec,
    admitting_errors,
    pop_bool,
    structure,
)
from cc_executor.protocol.mcp_session_tools import (
    SESSION_INPUTS,
    SESSION_TOOLS,
    SessionToolArgs,
    parse_session_arguments,
)
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.params import ExecuteParams, ParamError, normalise_signal


@attrs.frozen
class RunTool:
    """`execute` or `claude`: what to start, and whether the call waits for the end."""

    params: ExecuteParams | ClaudeParams
    wait: bool = True
    durable: bool = False


def _control_signal(_: object, __: object, value: str | None) -> None:
    if value is not None:
        normalise_signal(value)  # raises for a signal the `signal` method would refuse


@attrs.frozen
class ControlArgs:
    """Pause, resume, cancel or signal a run."""

    run: str
    action: Literal["pause", "resume", "cancel", "signal"]
    signal: str | None = attrs.field(default=None, validator=_control_signal)

    def __attrs_post_init__(self) -> None:
        if (self.action == "signal") != (self.signal is not None):
            raise ParamError(".signal", "required with action 'signal', and only with it")

    @property
    def signal_name(self) -> str:
        assert self.signal is not None
        return self.signal if self.signal.startswith("SIG") else f"SIG{self.signal}"


@attrs.frozen
class StatusArgs:
    """One run's status, or the daemon's."""

    run: str | None = None


@attrs.frozen
class ListArgs:
    """Every run of the caller's identity, on any connection, and every durable run it may see."""


def _non_negative(_: object, field: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ParamError(f".{field.name}", "must be >= 0")


def _positive(_: object, field: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value <= 0:
        raise ParamError(f".{field.name}", "must be positive")


@attrs.frozen
class ReadOutputArgs:
    """A run's output events after `from_seq`, at most `max_bytes` of data."""

    run: str
    from_seq: int = attrs.field(default=0, validator=_non_negative)
    max_bytes: int | None = attrs.field(default=None, validator=_positive)


ToolArgs = RunTool | ControlArgs | StatusArgs | ListArgs | ReadOutputArgs | SessionToolArgs


def parse_arguments(tool: str, arguments: object) -> ToolArgs | list[str]:
    """The typed arguments of a call to `tool`, or the list of what is wrong with them."""
    if arguments is None:
        arguments = {}
    if type(arguments) is not dict:
        return ["arguments must be an object"]
    raw: dict[str, JSON] = dict(arguments)
    schema = _RUN_INPUTS.get(tool) or SESSION_INPUTS.get(tool)
    if schema is not None:
        known = schema["properties"]
        assert isinstance(known, dict)
        unexpected = sorted(set(raw) - set(known))
        if unexpected:  # the schema says additionalProperties: false, and it holds
            return [f"unexpected field @ $.{name}" for name in unexpected]
    try:
        match tool:
            case "execute":
                wait = pop_bool(raw, "wait", True)
                params = structure(raw, ExecuteParams)
                return RunTool(params, wait, params.durable)
            case "claude":
                wait = pop_bool(raw, "wait", True)
                claude = structure(raw, ClaudeParams)
                return RunTool(claude, wait, claude.durable)
            case "control":
                return structure(raw, ControlArgs)
            case "status":
                return structure(raw, StatusArgs)
            case "list":
                return structure(raw, ListArgs)
            case "read_output":
                return structure(raw, ReadOutputArgs)
        session = parse_session_arguments(tool, raw)
        if session is not None:
            return session
    except InvalidParams as exc:
        data = exc.data if isinstance(exc.data, list) else [exc.message]
        return [str(item).replace("$.params", "$") for item in data]
    return [f"unknown tool {tool!r}"]


# -- schemas ----------------------------------------------------------------------------------


_EXECUTE_INPUT: dict[str, JSON] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "A command line, split like a shell would."},
        "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "shell": {"type": "boolean", "description": "Run command via /bin/sh -c (if allowed)."},
        "cwd": {"type": "string"},
        "env": ENV,
        "timeout": {**SECONDS, "description": "Absolute timeout in seconds."},
        "idle_timeout": {**SECONDS, "description": "Seconds without output before ending it."},
        "durable": {
            "type": "boolean",
            "description": "Journal the run so that it survives this client.",
        },
        "wait": WAIT,
    },
    "additionalProperties": False,
    "description": "Exactly one of command and argv.",
}

_CLAUDE_INPUT: dict[str, JSON] = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}, **CLAUDE_PROPERTIES, "wait": WAIT},
    "required": ["prompt"],
    "additionalProperties": False,
}

# The tools that start runs, by name: their input schemas are enforced as written.
_RUN_INPUTS: dict[str, dict[str, JSON]] = {"execute": _EXECUTE_INPUT, "claude": _CLAUDE_INPUT}

_RUN_OUTPUT: dict[str, JSON] = {
    "type": "object",
    "properties": {
        "run": {"type": "string"},
        "state": {"type": "string"},
        "durable": {"type": "boolean"},
        "outcome": {"type": ["string", "null"]},
        "exit_code": {"type": ["integer", "null"]},
        "signal": {"type": ["string", "null"]},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "stdout_bytes": {"type": "integer"},
        "stderr_bytes": {"type": "integer"},
        "truncated": {"type": "boolean"},
        "last_seq": {"type": "integer"},
    },
    "required": ["run", "state"],
}

TOOLS: Final[tuple[ToolSpec, ...]] = (
    ToolSpec(
        "execute",
        "Run a command",
        "Run a command on the cc-executor host: its output streams as progress, the result "
        "has its exit status and the tail of stdout and stderr. Long runs: use task mode, or "
        "durable with wait=false and poll with read_output.",
        _EXECUTE_INPUT,
        _RUN_OUTPUT,
        "optional",
        False,
    ),
    ToolSpec(
        "claude",
        "Run Claude Code",
        "Run the Claude Code CLI non-interactively (claude -p) with the daemon's Claude profile; "
        "the result carries Claude's final answer.",
        _CLAUDE_INPUT,
        _RUN_OUTPUT,
        "optional",
        False,
    ),
    ToolSpec(
        "control",
        "Control a run",
        "Pause, resume, cancel (SIGTERM, grace, SIGKILL) or signal a run; answers once the "
        "effect has happened.",
        {
            "type": "object",
            "properties": {
                "run": {"type": "string"},
                "action": {"enum": ["pause", "resume", "cancel", "signal"]},
                "signal": {"type": "string", "description": "With action 'signal': USR1, INT…"},
            },
            "required": ["run", "action"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"run": {"type": "string"}, "status": {"type": "string"}},
            "required": ["run", "status"],
        },
        "forbidden",
        False,
    ),
    ToolSpec(
        "status",
        "Status",
        "One run's status, or the daemon's when no run is named.",
        {
            "type": "object",
            "properties": {"run": {"type": "string"}},
            "additionalProperties": False,
        },
        OBJECT,
        "forbidden",
        True,
    ),
    ToolSpec(
        "list",
        "List runs",
        "Every run of yours on any connection, live or recently completed, and every durable"
        " run you may see.",
        {"type": "object", "properties": {}, "additionalProperties": False},
        {
            "type": "object",
            "properties": {
                "runs": {"type": "array", "items": {"type": "object"}},
                "omitted": {
                    "type": "integer",
                    "description": "Older runs left out so that the answer fits one frame.",
                },
            },
            "required": ["runs"],
        },
        "forbidden",
        True,
    ),
    ToolSpec(
        "read_output",
        "Read output",
        "A run's output events after sequence number from_seq, at most max_bytes of data; "
        "call again with next_seq to continue.",
        {
            "type": "object",
            "properties": {
                "run": {"type": "string"},
                "from_seq": {"type": "integer", "minimum": 0, "default": 0},
                "max_bytes": {"type": "integer", "minimum": 1},
            },
            "required": ["run"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "run": {"type": "string"},
                "events": {"type": "array", "items": {"type": "object"}},
                "next_seq": {"type": "integer"},
                "last_seq": {"type": "integer"},
                "complete": {"type": "boolean"},
                "first_available_seq": {"type": "integer"},
            },
            "required": ["run", "events", "next_seq", "last_seq", "complete"],
        },
        "forbidden",
        True,
    ),
    *SESSION_TOOLS,
)

TOOL_NAMES: Final = frozenset(spec.name for spec in TOOLS)
TASK_SUPPORT: Final[Mapping[str, TaskSupport]] = {spec.name: spec.task_support for spec in TOOLS}


def tool_list(version: str | None) -> list[JSON]:
    """`tools/list`'s tools, with what the version knows (outputSchema, execution)."""
    tools: list[JSON] = []
    for spec in TOOLS:
        tool: dict[str, JSON] = {
            "name": spec.name,
            "description": spec.description,
            "inputSchema": spec.input_schema,
        }
        if at_least(version, "2025-06-18"):
            tool["title"] = spec.title
            tool["outputSchema"] = admitting_errors(spec.output_schema)
        tool["annotations"] = {
            "readOnlyHint": spec.read_only,
            "destructiveHint": not spec.read_only,
            "openWorldHint": not spec.read_only,
        }
        if at_least(version, "2025-11-25"):
            tool["execution"] = {"taskSupport": spec.task_support}
        tools.append(tool)
    return tools
