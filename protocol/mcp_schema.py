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

# A tool's own failure (policy, a limit, no such run) is a result with `isError` whose
# structured content is `{"error": {code, message, data}}`.  Clients validate structured
# content against the output schema whatever `isError` says (the TypeScript SDK does, and then
# throws instead of returning the result), so every output schema admits that form too.
TOOL_ERROR: dict[str, JSON] = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
    "required": ["code", "message"],
    "description": "Set instead of the fields above when the tool failed (isError): the "
    "cc-executor error code, its message and data.",
}


def admitting_errors(schema: Mapping[str, JSON]) -> dict[str, JSON]:
    """`schema`, or the tool-error form: `error` as a property, the required fields as one
    alternative and `error` as the other."""
    out = dict(schema)
    properties = out.get("properties", {})
    assert isinstance(properties, dict)
    out["properties"] = {**properties, "error": TOOL_ERROR}
    required = out.pop("required", None)
    if required:
        out["anyOf"] = [{"required": required}, {"required": ["error"]}]
    return out


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
