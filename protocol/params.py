"""The params of every client method, as frozen classes that are valid by construction.

Types are checked by the strict converter (converter.py) before a class is built; the
validators here check what types cannot say (exactly one of command/argv, no NUL bytes,
positive timeouts, known signal names). They raise `ParamError`, which names the offending
field so the -32602 reply can point at it (`"... @ $.params.argv[1]"`). Building a params
object directly (the client library, tests) runs the same checks.
"""

import base64
import binascii
import math
from typing import Any, Literal, cast

import attrs

SIGNALS = frozenset(
    {
        "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGKILL", "SIGALRM",
        "SIGWINCH", "SIGPIPE",
    }
)  # fmt: skip
# Stopping and continuing are PAUSE and RESUME: sent as plain signals they would stop or
# continue the run's processes behind the back of its state (a "paused" run running).
STATE_SIGNALS = frozenset({"SIGSTOP", "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU"})


class ParamError(ValueError):
    """A params value that has the right type but is not acceptable."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{reason} @ $.params{where}")
        self.where = where  # a JSONPath suffix: ".argv[1]", ".env['A']", or "" for the object
        self.reason = reason


# An empty or blank `command`; the original profile answers it with an error of its own.
EMPTY_COMMAND = ParamError(".command", "must not be empty")


def _no_nul(where: str, value: str) -> None:
    # A NUL cannot reach execve: it would silently truncate the string in C.
    if "\0" in value:
        raise ParamError(where, "must not contain a NUL byte")


def _optional_positive(_: object, field: "attrs.Attribute[Any]", value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ParamError(f".{field.name}", "must be a positive number of seconds")


@attrs.frozen
class ExecuteParams:
    """Start a run: a command line (split, or via /bin/sh -c when `shell`) or an argv."""

    command: str | None = None
    argv: tuple[str, ...] | None = None
    shell: bool = False
    cwd: str | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    stdin: Literal["null", "pipe"] = "null"
    timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    idle_timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    # A durable run outlives its connection: its events are journaled and any connection can
    # `attach` to it; the connection that starts it is attached from seq 0.
    durable: bool = False

    def __attrs_post_init__(self) -> None:
        if (self.command is None) == (self.argv is None):
            raise ParamError("", "exactly one of command and argv is required")
        if self.command is not None:
            if not self.command.strip():
                raise ParamError(EMPTY_COMMAND.where, EMPTY_COMMAND.reason)
            _no_nul(".command", self.command)
        if self.argv is not None:
            if not self.argv:
                raise ParamError(".argv", "must not be empty")
            if not self.argv[0]:
                raise ParamError(".argv[0]", "must name a program")
            for i, arg in enumerate(self.argv):
                _no_nul(f".argv[{i}]", arg)
            if self.shell:
                raise ParamError(".shell", "only allowed with command, not with argv")
        if self.cwd is not None:
            _no_nul(".cwd", self.cwd)
        for key, value in self.env.items():
            where = f".env[{key!r}]"
            if not key or "=" in key:
                raise ParamError(where, "a variable name must be non-empty and without '='")
            _no_nul(where, key)
            _no_nul(where, value)


@attrs.frozen
class ControlParams:
    """PAUSE, RESUME or CANCEL a run (the connection's only run when `run` is None)."""

    type: Literal["PAUSE", "RESUME", "CANCEL"]
    run: str | None = None


def normalise_signal(name: str) -> str:
    """The full name of a signal a client may send ("USR1" and "SIGUSR1" alike)."""
    full = name if name.startswith("SIG") else f"SIG{name}"
    if full in STATE_SIGNALS:
        raise ParamError(".signal", f"{full} is not sent as a signal: use control PAUSE or RESUME")
    if full not in SIGNALS:
        raise ParamError(".signal", f"unknown signal {name!r}")
    return full


@attrs.frozen
class SignalParams:
    """Send a signal (by name, "USR1" or "SIGUSR1") to a run's process group."""

    run: str
    signal: str = attrs.field(converter=normalise_signal)


@attrs.frozen
class StdinParams:
    """Write to a run's stdin and/or close it."""

    run: str
    data: str = ""
    encoding: Literal["utf-8", "base64"] = "utf-8"
    eof: bool = False

    def __attrs_post_init__(self) -> None:
        # Decode once here so that a bad payload is a -32602 at receive time, not later.
        _decode_stdin(self.data, self.encoding)

    def payload(self) -> bytes:
        """The bytes to write (known to decode: the object was validated when built)."""
        return _decode_stdin(self.data, self.encoding)


def _decode_stdin(data: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ParamError(".data", "not valid base64") from None
    try:
        return data.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: possible from Python, never from JSON
        raise ParamError(".data", "not valid Unicode text") from None


@attrs.frozen
class StatusParams:
    """Describe one run, or every run of the connection when `run` is None."""

    run: str | None = None


# What one `list` reply may hold of runs' JSON (under the 1 MiB default of common WebSocket
# clients, whatever their arguments: a page ends before the run that would take it over), and
# its `limit` at most.
# Each page costs a pass over every run the caller may see (W12: 10,000 runs were 21 pages of
# 256 KiB and 250 ms for all; 7 of 768 KiB cut that threefold).
LIST_PAGE_BYTES = 768 * 1024
LIST_LIMIT_MAX = 1000


def list_cursor(started: float | None, run: str) -> str:
    """Where a `list` page ended: runs are listed by (start time, id), and the next page
    starts after this key (a run that went meanwhile does not move it)."""
    return f"{started or 0.0!r}/{run}"


def parse_list_cursor(cursor: str) -> tuple[float, str]:
    """The (start time, run id) a cursor from ``list_cursor`` names."""
    started, slash, run = cursor.partition("/")
    try:
        key = float(started)
    except ValueError:
        key = float("nan")
    if not slash or not run or key != key or key in (float("inf"), float("-inf")):
        raise ParamError(".after", "not a cursor a `list` reply gave (its `next`)")
    return key, run


def _page_limit(_: object, field: "attrs.Attribute[Any]", value: int | None) -> None:
    if value is not None and not 1 <= value <= LIST_LIMIT_MAX:
        raise ParamError(f".{field.name}", f"must be from 1 to {LIST_LIMIT_MAX}")


def _list_cursor(_: object, field: "attrs.Attribute[Any]", value: str | None) -> None:
    if value is not None:
        parse_list_cursor(value)


@attrs.frozen
class ListParams:
    """List runs, a page at a time: at most `limit` runs (and ``LIST_PAGE_BYTES`` of them)
    after the cursor `after` (the `next` of the page before)."""

    limit: int | None = attrs.field(default=None, validator=_page_limit)
    after: str | None = attrs.field(default=None, validator=_list_cursor)


def _non_negative(_: object, field: "attrs.Attribute[Any]", value: int) -> None:
    if value < 0:
        raise ParamError(f".{field.name}", "must be a sequence number >= 0")


@attrs.frozen
class AttachParams:
    """Follow a durable run: replay every event after `from_seq`, then continue live."""

    run: str
    from_seq: int = attrs.field(default=0, validator=_non_negative)


@attrs.frozen
class DetachParams:
    """Stop following a durable run on this connection (the run goes on)."""

    run: str


def unstructure_params(params: object) -> dict[str, Any]:
    """The JSON object for a params object: every field, tuples as arrays (a client's side of
    the wire, so it needs no converter; tests check it against cattrs' unstructuring)."""
    fields = attrs.fields(cast(Any, type(params)))
    return {field.name: _plain(getattr(params, field.name)) for field in fields}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if attrs.has(type(value)):
        return unstructure_params(value)
    return value
