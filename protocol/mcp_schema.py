"""What the MCP tool modules share: the tool spec record, schema pieces, argument helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

import attrs

from cc_executor.protocol.converter import structure_params
from cc_executor.protocol.errors import InvalidParams
from cc_executor.protocol.messages import JSON

T = TypeVar("T")

TaskSupport = Literal["forbidden", "optional", "required"]


@attrs.frozen
class ToolSpec:
    name: str
    title: str
    description: str
    input_schema: dict[str, JSON]
    output_schema: dict[str, JSON]
    task_support: TaskSupport
    read_only: bool


SECONDS: dict[str, JSON] = {"type": "number", "exclusiveMinimum": 0}
ENV: dict[str, JSON] = {"type": "object", "additionalProperties": {"type": "string"}}
WAIT: dict[str, JSON] = {
    "type": "boolean",
    "default": True,
    "description": "Wait for the run to end (with progress). False: return the run id at once; "
    "follow it with read_output and status.",
}
OBJECT: dict[str, JSON] = {"type": "object"}

# The `claude` method's fields an MCP tool takes (the `claude` tool adds `prompt` and `wait`,
# `claude_start` an optional `prompt`).
CLAUDE_PROPERTIES: dict[str, JSON] = {
    "model": {"type": "string"},
    "allowed_tools": {"type": "array", "items": {"type": "string"}},
    "disallowed_tools": {"type": "array", "items": {"type": "string"}},
    "max_turns": {"type": "integer", "minimum": 1},
    "resume": {"type": "string"},
    "continue_session": {"type": "boolean"},
    "session_id": {"type": "string"},
    "fork_session": {"type": "boolean"},
    "permission_mode": {"type": "string"},
    "extra_args": {"type": "array", "items": {"type": "string"}},
    "cwd": {"type": "string"},
    "env": ENV,
    "timeout": SECONDS,
    "idle_timeout": {
        **SECONDS,
        "description": "Seconds without a stream-json event before idle_action.",
    },
    "idle_action": {"type": "string", "enum": ["report", "interrupt", "cancel"]},
    "durable": {"type": "boolean"},
}


def structure(raw: Mapping[str, JSON], cls: type[T]) -> T:
    """Arguments through the one strict converter (InvalidParams names what is wrong)."""
    return structure_params(raw, cls)


def pop_bool(raw: dict[str, JSON], name: str, default: bool) -> bool:
    """Take a boolean argument out of `raw` (it is not a field of the params class)."""
    value = raw.pop(name, default)
    if type(value) is not bool:
        raise InvalidParams(
            f"expected boolean @ $.arguments.{name}", [f"expected boolean @ $.{name}"]
        )
    return value
