"""structlog set-up, configured once at the program's entry: JSON lines, or plain words.

``json`` writes one object per line (for collectors, and whenever stderr is not a terminal);
``console`` writes one line a person can read per event, with the daemon's own events
(listening, clients, runs, draining) said in words. In both, every field is a plain value:
``plain_values`` turns enums, attrs objects (a run's outcome), exceptions and paths into
strings, numbers, lists and dicts, so no log line ever shows a Python repr.
"""

from __future__ import annotations

import atexit
import datetime
import enum
import logging
import signal
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import attrs
import orjson
import structlog

from cc_executor.executor.logwriter import LineWriter

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("console", "json")


def plain(value: Any) -> Any:
    """A value as JSON has it: enums by their value, attrs objects as dicts (with their class
    name as ``type`` unless they have a field of that name), exceptions as their message."""
    if value is None or isinstance(value, bool | int | float | str):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if attrs.has(type(value)):
        fields = {f.name: plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
        return {"type": type(value).__name__, **fields} if "type" not in fields else fields
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}" if str(value) else type(value).__name__
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    return str(value)


# Values that are plain already, by exact type (an enum of str or int is not: it goes to plain).
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def plain_values(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """The structlog processor for `plain`; most fields are plain already and pass as they
    are (a run's end line: 16-17 -> 10-12 us)."""
    plain_types = _PLAIN_TYPES
    return {key: item if type(item) in plain_types else plain(item) for key, item in event.items()}


# -- the console's words -----------------------------------------------------------------

Words = Callable[[dict[str, Any]], str]


def _urls(fields: dict[str, Any]) -> str:
    host = fields.pop("host", "127.0.0.1")
    shown = f"[{host}]" if ":" in str(host) else host
    return ", ".join(f"ws://{shown}:{port}/" for port in fields.pop("ports", []))


def _policy(policy: Any) -> str:
    """The policy summary of the start-up line (CommandPolicy.summary), in a few words."""
    if not isinstance(policy, dict):
        return "commands: any"
    allowed = [str(item).split("=", 1)[0] for item in policy.get("allowed", [])]
    if policy.get("unlisted_commands") == "refused":
        commands = ", ".join(allowed) or "none"
    else:
        commands = "any" + (f" (rules for {', '.join(allowed)})" if allowed else "")
    return f"commands: {commands}; shell: {policy.get('shell', 'refused')}"


def _listening(fields: dict[str, Any]) -> str:
    urls = _urls(fields)
    said = fields.pop("message", None) or f"listening on {urls}"
    fields.pop("urls", None)
    auth = fields.pop("auth", None)
    fields.pop("identities", None)
    fields.pop("subreaper", None)
    policy = _policy(fields.pop("policy", None))
    return f"{said} (pid {fields.pop('pid', '?')}; tokens: {auth}; {policy})"


def _draining(fields: dict[str, Any]) -> str:
    live, grace = fields.pop("live_runs", 0), fields.pop("grace", None)
    fields.pop("then", None)
    clients = fields.pop("connections", 0)
    return (
        f"draining: no new runs; {live} live run(s) may finish for {grace} s, then they are "
        f"cancelled; {clients} client(s) told. A second Ctrl-C or SIGTERM ends them now"
    )


def _signal(fields: dict[str, Any]) -> str:
    name = fields.pop("signal", "a signal")
    if fields.pop("hurry", False):
        return f"got {name} again: ending the live runs now"
    return f"got {name}: shutting down"


def _session_open(fields: dict[str, Any]) -> str:
    remote = fields.pop("remote", "?")
    fields.pop("path", None)
    protocol = fields.pop("subprotocol", None)
    return f"client connected from {remote}" + (f" ({protocol})" if protocol else "")


def _session_close(fields: dict[str, Any]) -> str:
    return (
        f"client left after {fields.pop('duration', '?')} s: {fields.pop('requests', 0)} "
        f"request(s), {fields.pop('runs', 0)} run(s), {fields.pop('errors', 0)} error(s)"
    )


def _run_start(fields: dict[str, Any]) -> str:
    for shown_elsewhere in ("pgid", "origin", "kind"):
        fields.pop(shown_elsewhere, None)
    durable = " (durable)" if fields.pop("durable", False) else ""
    return f"run started{durable}: {fields.pop('argv0', '?')} (pid {fields.pop('pid', '?')})"


def _signal_name(number: Any) -> str:
    try:
        return signal.Signals(int(number)).name
    except (TypeError, ValueError):
        return str(number)


def _outcome(fields: dict[str, Any]) -> str:
    """How a run ended (the `run.end` line's wire words: outcome, reason, rung...) in words."""
    reason, rung = fields.pop("reason", None), fields.pop("rung", None)
    code, sig = fields.pop("exit_code", None), fields.pop("signal", None)
    timeout = fields.pop("timeout", None)
    ended = f"; {rung} ended it" if rung else ""
    match fields.pop("outcome", None):
        case "exited":
            return f"exited {code}"
        case "signalled":
            return f"killed by {sig or _signal_name(code)}"
        case "cancelled":
            return f"cancelled ({reason}){ended}"
        case "timed_out":
            return f"timed out ({timeout} limit){ended}"
        case "spawn_failed":
            return f"could not start: {reason}"
        case "lost":
            return f"lost: {reason}"
        case "failed":
            return f"failed: {reason}"
        case other:
            return str(other or "ended")


def _run_end(fields: dict[str, Any]) -> str:
    for shown_elsewhere in ("kind", "last_seq", "durable"):
        fields.pop(shown_elsewhere, None)
    said = _outcome(fields)
    out, err = fields.pop("stdout_bytes", None), fields.pop("stderr_bytes", None)
    after = fields.pop("duration", None)
    return (
        f"run ended: {fields.pop('argv0', '?')} {said}"
        + (f" after {after} s" if after is not None else "")
        + (f", {out} B out, {err} B err" if out is not None else "")
    )


def _state_unreadable(fields: dict[str, Any]) -> str:
    directory, error = fields.pop("directory", "?"), fields.pop("error", "?")
    return (
        f"cannot use {directory}: {error} — fix it, or choose another --state-dir (CCX_STATE_DIR)"
    )


WORDS: dict[str, Words] = {
    "daemon.listening": _listening,
    "daemon.draining": _draining,
    "daemon.signal": _signal,
    "daemon.stopped": lambda fields: "stopped",
    "session.open": _session_open,
    "session.close": _session_close,
    "run.start": _run_start,
    "run.end": _run_end,
    "durable.state_unreadable": _state_unreadable,
}
# Fields shown after the words, in this order, when present; the rest follow as key=value.
CONTEXT = ("run", "session", "identity")


def render_console(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> str:
    """One line for a person: time, level (unless info), the event in words, its context."""
    fields = dict(event)
    name = str(fields.pop("event", ""))
    stamp = fields.pop("timestamp", "")
    level = fields.pop("level", "info")
    trace = fields.pop("exception", None)
    words = WORDS.get(name)
    text = words(fields) if words is not None else name
    context = [f"{key} {fields.pop(key)}" for key in CONTEXT if fields.get(key) is not None]
    rest = [f"{key}={orjson.dumps(value).decode()}" for key, value in fields.items()]
    line = " ".join(part for part in (stamp, "" if level == "info" else f"{level}:", text) if part)
    if context or rest:
        line += "  [" + ", ".join([*context, *rest]) + "]"
    return line + (f"\n{trace}" if trace else "")


def choose_format(flag: str | None, environ: Mapping[str, str], stream: Any) -> str:
    """--log-format, else CCX_LOG_FORMAT, else console on a terminal and json elsewhere.

    Raises:
        ValueError: a format that is neither.
    """
    chosen = flag or environ.get("CCX_LOG_FORMAT") or None
    if chosen is None:
        return "console" if stream.isatty() else "json"
    if chosen not in FORMATS:
        raise ValueError(f"CCX_LOG_FORMAT must be console or json, not {chosen!r}")
    return chosen


class _QueuedLogger:
    """structlog's logger: every method queues the rendered line on the writer thread."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, message: str | bytes) -> None:
        self._writer.put(message.encode() if isinstance(message, str) else message)

    log = debug = info = warn = warning = error = err = critical = exception = failure = msg


def _lost_json(count: int, reason: str) -> bytes:
    return orjson.dumps(
        {
            "event": "log.lines_lost",
            "lines": count,
            "reason": reason,
            "level": "warning",
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
        }
    )


def _lost_console(count: int, reason: str) -> bytes:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    lines = "line was" if count == 1 else "lines were"
    return f"{stamp} warning: {count} log {lines} lost ({reason})".encode()


_writer: LineWriter | None = None


def log_writer() -> LineWriter | None:
    """The writer thread stderr's log lines go through, once logging is configured."""
    return _writer


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """Send every log event to stderr — one JSON object per line, or one line in words —
    through a writer thread, so that a log line never blocks or fails the caller
    (executor/logwriter.py)."""
    global _writer
    lost_line = _lost_json if json else _lost_console
    if _writer is None:  # one writer per process: loggers made earlier keep working
        _writer = LineWriter(sys.stderr.fileno(), lost_line)
        atexit.register(_writer.close)
    else:
        _writer.lost_line = lost_line
    writer = _writer
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso" if json else "%H:%M:%S", utc=json),
        structlog.processors.format_exc_info,
        plain_values,
    ]
    if json:
        renderer: structlog.typing.Processor = structlog.processors.JSONRenderer(
            serializer=orjson.dumps
        )
    else:
        renderer = render_console
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_args: _QueuedLogger(writer),
        cache_logger_on_first_use=True,
    )
