"""The client's exceptions: one class per protocol error code, plus the connection's own.

A `ServerError` is a JSON-RPC error reply; its class says which code (`RunNotFoundError` for
-32002, ...), `message` is the server's text, `data` its error data. The table is built from
the protocol's own `ErrorCode`, so a code the protocol adds without a class here still raises a
`ServerError` with that code.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cc_executor.protocol import ErrorCode


class ClientError(Exception):
    """Anything the client library raises on purpose."""


class InvalidUrl(ClientError, ValueError):
    """The URL cannot name a daemon (empty, not ``ws://`` or ``wss://``, no host); nothing was
    sent."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url!r} is not a daemon URL: {reason}")
        self.url = url
        self.reason = reason


# How a `DaemonUnavailable` reason starts when the URL's host could not be looked up.
LOOKUP_FAILED = "cannot look up its host"
TIMED_OUT = "timed out connecting"  # nothing took the TCP connection within connect_timeout
# ... and when something took the TCP connection but never answered the upgrade (a daemon
# stopped with SIGSTOP or too busy to answer: the kernel accepts for it all the same).
NOT_ANSWERING = "it took the connection but did not answer"


class DaemonUnavailable(ClientError):
    """No cc-executor daemon could be talked to at the URL.

    Instances of this class itself: nothing answered (refused, unreachable, too slow). The
    subclasses say who answered instead: `HandshakeRefused`, `NotADaemon`.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"no cc-executor daemon at {url} ({reason})")
        self.url = url
        self.reason = reason


class HandshakeRefused(DaemonUnavailable):
    """The daemon refused the connection; `text` is its own words.

    `status` is the HTTP status of a refused upgrade (401: no valid token, 403: Origin not
    allowed, 404: no endpoint at that path), or None when the daemon accepted the WebSocket and
    then refused the session with an error reply (`error`, e.g. its connection limit).
    """

    def __init__(
        self, url: str, status: int | None, text: str, error: ServerError | None = None
    ) -> None:
        super().__init__(url, text if status is None else f"HTTP {status}: {text}")
        self.status = status
        self.text = text
        self.error = error


class NotADaemon(DaemonUnavailable):
    """Something answers at the URL, but it is not a cc-executor daemon."""


class ConnectionLost(ClientError):
    """The connection ended while a request or a run's stream still needed it.

    `unreachable` is set when reconnecting for a durable run was tried and failed: the last
    attempt's failure (the daemon gone, refusing, ...).
    """

    def __init__(self, *args: object, unreachable: DaemonUnavailable | None = None) -> None:
        super().__init__(*args)
        self.unreachable = unreachable


class JournalUnreadable(ConnectionLost):
    """The daemon could not read a durable run's journal for this connection's follow (its
    `process.journal_error` "cannot read the journal: ..."), and follows it no further here.

    The run itself is not affected; attaching again from `last_seq` (the last event received)
    reads the journal anew. `reason` is the daemon's, without that prefix.
    """

    def __init__(self, run: str, reason: str, last_seq: int) -> None:
        super().__init__(
            f"run {run}: the daemon could not read its journal and stopped following it "
            f"({reason}); attach again from seq {last_seq}"
        )
        self.run = run
        self.reason = reason
        self.last_seq = last_seq


class ProtocolViolation(ClientError):
    """The server sent something the protocol does not allow (a daemon bug)."""


class ServerError(ClientError):
    """An error reply; `code`, `message` and `data` are the server's."""

    code: int = 0  # the class's code; instances carry the code actually received
    codes: ClassVar[tuple[ErrorCode, ...]] = ()

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return self.message


class InvalidRequestError(ServerError):
    """The server could not read our message (-32700, -32600): a client bug."""

    codes = (ErrorCode.PARSE_ERROR, ErrorCode.INVALID_REQUEST)


class MethodNotFoundError(ServerError):
    """The daemon does not know the method (an older daemon?)."""

    codes = (ErrorCode.METHOD_NOT_FOUND,)


class InvalidParamsError(ServerError):
    """The params do not fit the method; `data` says where."""

    codes = (ErrorCode.INVALID_PARAMS,)


class InternalServerError(ServerError):
    """The daemon failed (a daemon bug); it closes the session."""

    codes = (ErrorCode.INTERNAL_ERROR,)


class PolicyRefusedError(ServerError):
    """Refused by the daemon's policy; `rule` names the rule (`allowed_commands`, ...)."""

    codes = (ErrorCode.POLICY_REFUSED,)

    @property
    def rule(self) -> str | None:
        return _field(self.data, "rule")


class RunNotFoundError(ServerError):
    """No such run (or none visible to this connection)."""

    codes = (ErrorCode.RUN_NOT_FOUND,)


class LimitExceededError(ServerError):
    """A connection, run or quota limit; `limit` names it."""

    codes = (ErrorCode.LIMIT_EXCEEDED,)

    @property
    def limit(self) -> str | None:
        return _field(self.data, "limit")


class InvalidStateError(ServerError):
    """The run's state does not allow that (pause a paused run, anything on a finished one)."""

    codes = (ErrorCode.INVALID_STATE,)

    @property
    def state(self) -> str | None:
        return _field(self.data, "state")


class SpawnFailedError(ServerError):
    """The process could not be started; the message says why."""

    codes = (ErrorCode.SPAWN_FAILED,)


class ControlTimeoutError(ServerError):
    """Processes did not reach the requested state in time."""

    codes = (ErrorCode.CONTROL_TIMEOUT,)


class ShuttingDownError(ServerError):
    """The daemon is draining and takes no new runs."""

    codes = (ErrorCode.SHUTTING_DOWN,)


class RangeRemovedError(ServerError):
    """`attach` from a seq whose events retention removed; `available_from_seq` says where to."""

    codes = (ErrorCode.RANGE_REMOVED,)

    @property
    def available_from_seq(self) -> int | None:
        value = self.data.get("available_from_seq") if isinstance(self.data, dict) else None
        return value if isinstance(value, int) else None


class AlreadyDecidedError(ServerError):
    """A permission request was decided before this answer: `decided_by` says by whom
    (`client:<identity>/<connection>`, `rule:<name>`, `timeout`, `cancelled`), `behavior`
    how, `at` when (unix time)."""

    codes = (ErrorCode.ALREADY_DECIDED,)

    @property
    def decided_by(self) -> str | None:
        return _field(self.data, "decided_by")

    @property
    def behavior(self) -> str | None:
        return _field(self.data, "behavior")

    @property
    def at(self) -> float | None:
        value = self.data.get("at") if isinstance(self.data, dict) else None
        return float(value) if isinstance(value, int | float) else None


def _field(data: Any, name: str) -> str | None:
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


ERROR_CLASSES: dict[int, type[ServerError]] = {
    int(code): cls
    for cls in (
        InvalidRequestError,
        MethodNotFoundError,
        InvalidParamsError,
        InternalServerError,
        PolicyRefusedError,
        RunNotFoundError,
        LimitExceededError,
        InvalidStateError,
        SpawnFailedError,
        ControlTimeoutError,
        ShuttingDownError,
        RangeRemovedError,
        AlreadyDecidedError,
    )
    for code in cls.codes
}


def server_error(code: int, message: str, data: Any = None) -> ServerError:
    """The exception for an error reply."""
    return ERROR_CLASSES.get(code, ServerError)(code, message, data)
