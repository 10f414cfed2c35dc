"""MCP (Model Context Protocol) on the cc-executor endpoint: versions, eras and message shapes.

MCP is JSON-RPC 2.0 too, but with its own methods, its own envelope rules and two eras:

- the *handshake* era (2024-11-05 .. 2025-11-25): ``initialize`` negotiates one protocol
  version for the connection, ``notifications/initialized`` follows, ``ping`` keeps alive;
- the *modern* era (2026-07-28): stateless.  Every request carries
  ``_meta["io.modelcontextprotocol/protocolVersion"]`` and its client capabilities,
  ``server/discover`` replaces ``initialize``, results carry ``resultType`` and a version the
  server does not speak is error -32022 with ``data.supported``.

A request says its own era: one whose ``_meta`` names a protocol version is modern, any other
is handshake-era.  This module is pure: it classifies frames and builds results, the
connection state (mcp_connection.py) adds the rules that need memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import attrs
import orjson

from cc_executor.protocol.codec import ID_TYPE
from cc_executor.protocol.errors import (
    InvalidParams,
    InvalidRequest,
    JsonRpcError,
    MethodNotFound,
    ParseError,
)
from cc_executor.protocol.messages import JSON, ErrorObject, ErrorResponse, Id

SUBPROTOCOL: Final = "mcp"

HANDSHAKE_VERSIONS: Final[tuple[str, ...]] = (
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
)
MODERN_VERSIONS: Final[tuple[str, ...]] = ("2026-07-28",)
SUPPORTED_VERSIONS: Final[tuple[str, ...]] = (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS)
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[-1]

# Reserved `_meta` keys of the modern era.
PROTOCOL_VERSION_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
RELATED_TASK_KEY: Final = "io.modelcontextprotocol/related-task"
TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"

UNSUPPORTED_PROTOCOL_VERSION: Final = -32022

Era = Literal["handshake", "modern"]

# Methods a client may call, by era.  Anything else is -32601 at once: clients probe with
# `server/discover` and wait for an answer before falling back.
HANDSHAKE_METHODS: Final = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "tasks/get",
        "tasks/result",
        "tasks/list",
        "tasks/cancel",
    }
)
MODERN_METHODS: Final = frozenset(
    {"server/discover", "tools/list", "tools/call", "tasks/get", "tasks/update", "tasks/cancel"}
)

PROGRESS: Final = "notifications/progress"
CANCELLED: Final = "notifications/cancelled"
INITIALIZED: Final = "notifications/initialized"

_ENVELOPE = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})


class UnsupportedVersion(InvalidRequest):
    """A modern-era request names a protocol version we do not speak.

    A kind of invalid request, sent with MCP's own code -32022 rather than -32600.
    """

    def __init__(self, requested: str) -> None:
        super().__init__(
            f"Unsupported protocol version: {requested}",
            {"requested": requested, "supported": list(SUPPORTED_VERSIONS)},
        )

    @property
    def error(self) -> ErrorObject:
        return ErrorObject(UNSUPPORTED_PROTOCOL_VERSION, self.message, self.data)


# -- what a frame becomes ---------------------------------------------------------------------


@attrs.frozen
class McpRequest:
    """A request, with what its envelope says about its era and options."""

    id: Id
    method: str
    params: Mapping[str, JSON]
    era: Era
    version: str | None  # the modern request's protocol version; None in the handshake era
    progress_token: ProgressToken | None = None
    client_capabilities: Mapping[str, JSON] = attrs.field(factory=dict)

    @property
    def wants_tasks_extension(self) -> bool:
        """The modern client says it speaks the tasks extension."""
        extensions = self.client_capabilities.get("extensions")
        return isinstance(extensions, dict) and TASKS_EXTENSION in extensions


@attrs.frozen
class McpNotification:
    """A notification from the client (`initialized`, `cancelled`, ...)."""

    method: str
    params: Mapping[str, JSON]


@attrs.frozen
class McpInvalid:
    """A frame we refuse; `reply` is the error to send (id null when none was readable)."""

    reply: ErrorResponse


@attrs.frozen
class McpIgnored:
    """Something to drop silently: a response from the client (we send no requests)."""

    why: str


McpEvent = McpRequest | McpNotification | McpInvalid | McpIgnored


def refuse(id_: Id | None, exc: JsonRpcError) -> McpInvalid:
    return McpInvalid(ErrorResponse(id_, exc.error))


ProgressToken = str | int | float  # MCP: "string | number"


def readable_token(value: object) -> ProgressToken | None:
    """`value` as a progress token (a string or any number, never a bool), or None."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    return None


def readable_id(value: object) -> Id | None:
    """`value` as a JSON-RPC id, or None when it is not one (a bool is not an integer here)."""
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    return None


def decode_mcp(text: str) -> McpEvent:
    """Classify one text frame; never raises for anything a peer sends."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return refuse(None, ParseError(f"Parse error: {exc}"))
    if type(value) is list:
        # MCP removed JSON-RPC batching (2025-06-18); we refuse it in every era.
        return refuse(None, InvalidRequest("Invalid Request: MCP does not accept batches"))
    if type(value) is not dict:
        return refuse(None, InvalidRequest("Invalid Request: expected an object"))
    id_ = readable_id(value.get("id"))
    if "id" in value and id_ is None:
        return refuse(None, InvalidRequest(ID_TYPE))
    if value.get("jsonrpc") != "2.0":
        return refuse(id_, InvalidRequest('Invalid Request: jsonrpc must be "2.0"'))
    extra = value.keys() - _ENVELOPE
    if extra:
        return refuse(id_, InvalidRequest(f"Invalid Request: unexpected members {sorted(extra)}"))
    if "method" not in value:
        if "result" in value or "error" in value:
            return McpIgnored("a response from the client: we send no requests")
        return refuse(id_, InvalidRequest("Invalid Request: method is required"))
    method = value["method"]
    if type(method) is not str:
        return refuse(id_, InvalidRequest("Invalid Request: method must be a string"))
    params = value.get("params", {})
    if type(params) is not dict:
        return refuse(id_, InvalidRequest("Invalid Request: params must be an object"))
    if id_ is None:
        return McpNotification(method, params)
    return _request(id_, method, params)


def _request(id_: Id, method: str, params: dict[str, JSON]) -> McpEvent:
    meta = params.get("_meta", {})
    if type(meta) is not dict:
        return refuse(id_, InvalidParams("Invalid params: _meta must be an object"))
    token = meta.get("progressToken")
    progress_token = readable_token(token)
    if token is not None and progress_token is None:
        return refuse(
            id_, InvalidParams("Invalid params: progressToken must be a string or a number")
        )
    version = meta.get(PROTOCOL_VERSION_KEY)
    if version is None:
        if method not in HANDSHAKE_METHODS:
            return refuse(id_, MethodNotFound(f"Method not found: {method}"))
        return McpRequest(id_, method, params, "handshake", None, progress_token)
    if type(version) is not str:
        return refuse(id_, InvalidParams(f"Invalid params: _meta.{PROTOCOL_VERSION_KEY}"))
    if version not in MODERN_VERSIONS:
        return refuse(id_, UnsupportedVersion(version))
    if method not in MODERN_METHODS:
        return refuse(id_, MethodNotFound(f"Method not found: {method}"))
    capabilities = meta.get(CLIENT_CAPABILITIES_KEY, {})
    if type(capabilities) is not dict:
        return refuse(id_, InvalidParams(f"Invalid params: _meta.{CLIENT_CAPABILITIES_KEY}"))
    return McpRequest(id_, method, params, "modern", version, progress_token, capabilities)


def negotiate(requested: object) -> str:
    """The handshake's answer: the client's version if we speak it, else our latest."""
    if isinstance(requested, str) and requested in HANDSHAKE_VERSIONS:
        return requested
    return LATEST_HANDSHAKE


def at_least(version: str | None, minimum: str) -> bool:
    """True when `version` (None: modern) is `minimum` or newer."""
    if version is None or version in MODERN_VERSIONS:
        return True
    if version not in SUPPORTED_VERSIONS:
        return False
    return SUPPORTED_VERSIONS.index(version) >= SUPPORTED_VERSIONS.index(minimum)


# -- results ------------------------------------------------------------------------------


def server_capabilities(era: Era) -> dict[str, JSON]:
    """What we offer: tools, and tasks in the form the era knows."""
    capabilities: dict[str, JSON] = {"tools": {"listChanged": False}}
    if era == "handshake":
        capabilities["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    else:
        capabilities["extensions"] = {TASKS_EXTENSION: {}}
    return capabilities


def initialize_result(
    requested: object, server_info: Mapping[str, JSON], instructions: str
) -> dict[str, JSON]:
    """The answer to `initialize`."""
    return {
        "protocolVersion": negotiate(requested),
        "capabilities": server_capabilities("handshake"),
        "serverInfo": dict(server_info),
        "instructions": instructions,
    }


def discover_result(server_info: Mapping[str, JSON], instructions: str) -> dict[str, JSON]:
    """The answer to `server/discover` (before `resultType` is added)."""
    return {
        "supportedVersions": list(MODERN_VERSIONS),
        "capabilities": server_capabilities("modern"),
        "serverInfo": dict(server_info),
        "instructions": instructions,
        "cacheScope": "private",
        "ttlMs": 0,
    }


def complete(result: Mapping[str, JSON], era: Era) -> dict[str, JSON]:
    """`result` as the era wants it: modern results say `resultType` (default "complete")."""
    out = dict(result)
    if era == "modern":
        out.setdefault("resultType", "complete")
    return out


def tool_result(
    text: str,
    structured: Mapping[str, JSON] | None,
    *,
    is_error: bool,
    version: str | None,
) -> dict[str, JSON]:
    """A CallToolResult: text content always, structured content where the version has it."""
    result: dict[str, JSON] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None and at_least(version, "2025-06-18"):
        result["structuredContent"] = dict(structured)
    return result


def tool_input_error(problems: list[str], version: str | None) -> dict[str, JSON]:
    """Bad tool arguments: a tool result with `isError`, as the spec requires (not -32602)."""
    text = "Invalid arguments: " + "; ".join(problems)
    return tool_result(text, None, is_error=True, version=version)
