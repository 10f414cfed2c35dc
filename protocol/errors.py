"""JSON-RPC error codes and the two kinds of protocol error.

Like h11, we separate the peer's faults from ours. A `JsonRpcError` is something a client
did (or a request could not do): it carries the error object to send back. A
`LocalProtocolError` is the daemon breaking the protocol itself (answering an id twice,
output after completion); it is a bug, is never sent to a peer, and should crash loudly.
"""

import enum
from typing import ClassVar

from cc_executor.protocol.messages import JSON, ErrorObject


class ErrorCode(enum.IntEnum):
    """Every error code the daemon sends; -32000..-32099 are ours."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    POLICY_REFUSED = -32001
    RUN_NOT_FOUND = -32002
    LIMIT_EXCEEDED = -32003
    INVALID_STATE = -32005
    SPAWN_FAILED = -32006
    CONTROL_TIMEOUT = -32007
    SHUTTING_DOWN = -32008
    RANGE_REMOVED = -32009
    ALREADY_DECIDED = -32014


class JsonRpcError(Exception):
    """An error to report to the peer as a JSON-RPC error object."""

    code: ClassVar[ErrorCode]

    def __init__(self, message: str, data: JSON | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    @property
    def error(self) -> ErrorObject:
        """The error object to send."""
        return ErrorObject(code=int(self.code), message=self.message, data=self.data)


class ParseError(JsonRpcError):
    """The frame is not JSON."""

    code = ErrorCode.PARSE_ERROR


class InvalidRequest(JsonRpcError):
    """The JSON is not a valid JSON-RPC request."""

    code = ErrorCode.INVALID_REQUEST


class MethodNotFound(JsonRpcError):
    """No such method."""

    code = ErrorCode.METHOD_NOT_FOUND


class InvalidParams(JsonRpcError):
    """The params do not fit the method."""

    code = ErrorCode.INVALID_PARAMS


class InternalError(JsonRpcError):
    """The daemon failed while handling a valid request."""

    code = ErrorCode.INTERNAL_ERROR


class PolicyRefused(JsonRpcError):
    """The request is valid but policy forbids it."""

    code = ErrorCode.POLICY_REFUSED


class RunNotFound(JsonRpcError):
    """No run with that id."""

    code = ErrorCode.RUN_NOT_FOUND


class LimitExceeded(JsonRpcError):
    """A connection, run or quota limit is reached."""

    code = ErrorCode.LIMIT_EXCEEDED


class InvalidState(JsonRpcError):
    """The run cannot make that transition (e.g. pause a finished run)."""

    code = ErrorCode.INVALID_STATE


class SpawnFailed(JsonRpcError):
    """The process could not be started."""

    code = ErrorCode.SPAWN_FAILED


class ControlTimeout(JsonRpcError):
    """A control did not take effect in time."""

    code = ErrorCode.CONTROL_TIMEOUT


class ShuttingDown(JsonRpcError):
    """The daemon is draining and accepts no new work."""

    code = ErrorCode.SHUTTING_DOWN


class RangeRemoved(JsonRpcError):
    """An attach asked for events that retention has removed; `data` says which."""

    code = ErrorCode.RANGE_REMOVED


class AlreadyDecided(JsonRpcError):
    """A permission request was decided already; `data` says by whom, how and when."""

    code = ErrorCode.ALREADY_DECIDED


class LocalProtocolError(Exception):
    """The daemon itself tried something the protocol forbids; a bug, never sent."""
