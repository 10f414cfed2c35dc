"""What `ccx` says when a command fails: one line on stderr, saying what to do, and a status.

Every failure the client library raises on purpose maps to one `Failure` here; `ccx` prints
nothing else for it (no traceback). Connect and handshake failures each have their own exit
status (exits.py); the daemon's own words are passed on where it gave any.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from http import HTTPStatus

import attrs

from cc_executor.executor.client.config import DEFAULT_URL
from cc_executor.executor.client.errors import (
    LOOKUP_FAILED,
    NOT_ANSWERING,
    TIMED_OUT,
    ClientError,
    ConnectionLost,
    DaemonUnavailable,
    HandshakeRefused,
    InvalidUrl,
    JournalUnreadable,
    NotADaemon,
    PolicyRefusedError,
    RunNotFoundError,
    ServerError,
    SpawnFailedError,
)
from cc_executor.executor.client.exits import ExitStatus
from cc_executor.executor.client.parsers import Target

# How the daemon's spawn_failed starts when a durable run's journal cannot be made
# (executor/runs/durable.py): its state directory is unusable (not a directory, read-only).
NO_JOURNAL = "cannot create the run's journal"
DEFAULT_PORT = urllib.parse.urlsplit(DEFAULT_URL).port
# A single argv word with any of these was probably meant for a shell.
SHELL_SYNTAX = re.compile(r"""[\s|&;<>()$`*?~"'\\]""")


@attrs.frozen
class Failure:
    """What ccx prints (one line, or two with a hint) and the status it exits with."""

    text: str
    status: ExitStatus


def connect_failure(exc: InvalidUrl | DaemonUnavailable, target: Target) -> Failure:
    """The line for a URL that names no daemon, or a daemon that could not be talked to."""
    url = target.url
    match exc:
        case InvalidUrl() if target.url_from_env and not url:
            return Failure(
                f"ccx: CCX_URL is set but empty — unset it (for {DEFAULT_URL}) or set it to "
                "the daemon's ws:// URL",
                ExitStatus.EMPTY_URL,
            )
        case InvalidUrl(reason=reason):
            return Failure(
                f"ccx: {url!r} is not a daemon URL: {reason} — e.g. {DEFAULT_URL}",
                ExitStatus.BAD_URL,
            )
        case HandshakeRefused(status=None, text=text):
            return Failure(
                f"ccx: the daemon at {url} refused the session: {text} — try again later",
                ExitStatus.BUSY,
            )
        case HandshakeRefused(status=HTTPStatus.UNAUTHORIZED, text=text):
            todo = (
                "check --token / CCX_TOKEN"
                if target.token
                else "pass --token TOKEN or set CCX_TOKEN"
            )
            given = "refused the token" if target.token else "wants a token"
            return Failure(
                f"ccx: the daemon at {url} {given}: {text} — {todo}", ExitStatus.NOT_ALLOWED
            )
        case HandshakeRefused(status=HTTPStatus.NOT_FOUND, text=text):
            return Failure(
                f"ccx: the daemon at {url} refused the connection: {text} — its endpoint is "
                "the root path, e.g. ws://127.0.0.1:8003/",
                ExitStatus.WRONG_PATH,
            )
        case HandshakeRefused(text=text):
            return Failure(
                f"ccx: the daemon at {url} refused the connection: {text}",
                ExitStatus.NOT_ALLOWED,
            )
        case NotADaemon(reason=reason):
            return Failure(
                f"ccx: {url} is not a cc-executor daemon ({reason}) — check the host and port",
                ExitStatus.NOT_A_DAEMON,
            )
    if exc.reason == TIMED_OUT:  # the TCP connect: a network that drops it, a full backlog
        return Failure(
            f"ccx: nothing at {url} answered in time ({exc.reason}) — a daemon there may be "
            "stopped or overloaded; if none runs, start one with: ccx serve",
            ExitStatus.NO_DAEMON,
        )
    if exc.reason.startswith(NOT_ANSWERING):
        # Starting another daemon would not help: this port is taken, by one that is stuck.
        # (A daemon without TLS waits for a request line in the TLS hello of a wss:// URL.)
        tls = ", or it speaks no TLS (try ws://)" if url.startswith("wss://") else ""
        return Failure(
            f"ccx: the daemon at {url} is not answering ({exc.reason}) — it may be stopped "
            f"(kill -CONT resumes it) or too busy{tls}; check its process",
            ExitStatus.NO_DAEMON,
        )
    todo = "check the URL's host" if exc.reason.startswith(LOOKUP_FAILED) else start_hint(target)
    return Failure(
        f"ccx: no cc-executor daemon at {url} ({exc.reason}) — {todo}", ExitStatus.NO_DAEMON
    )


def start_hint(target: Target) -> str:
    """How to get a daemon where the URL points: `ccx serve` for the default URL (or ccx
    pointed at one started elsewhere), with the URL's port when it is another one."""
    if target.url == DEFAULT_URL and not target.url_from_env:
        return (
            "start one with: ccx serve (for one on another port or host: --url ws://HOST:PORT/ "
            "or CCX_URL)"
        )
    parts = urllib.parse.urlsplit(target.url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    serve = "ccx serve" + ("" if port == DEFAULT_PORT else f" --port {port}")
    if target.local:
        return f"start one with: {serve}"
    return f"check that a daemon runs on {parts.hostname} ({serve} there), and the URL"


def looks_like_shell(argv: Sequence[str]) -> bool:
    """`ccx run -- "echo hi | wc -c"`: one word holding a whole shell command line."""
    return bool(argv) and SHELL_SYNTAX.search(argv[0]) is not None


def shell_hint(argv: Sequence[str], target: Target) -> str:
    """How to run a shell command line: sh -c as a command, or the daemon's shell opt-in."""
    line = " ".join(argv)
    with_sh = target.ccx("run", "--", "sh", "-c", line)
    with_shell = target.ccx("run", "--shell", "--", line)
    return (
        f"ccx: {argv[0]!r} looks like a shell command line; argv runs without a shell. "
        f"Try: {with_sh} — or {with_shell} if the daemon was started with --allow-shell"
    )


def request_failure(
    exc: ClientError, target: Target, *, command: str, argv: Sequence[str] = ()
) -> Failure:
    """The line for a failure after connecting: a refused request, a lost connection."""
    own = ExitStatus.OWN_FAILURE if command == "run" else ExitStatus.FAILED
    hint = f"\n{shell_hint(argv, target)}" if looks_like_shell(argv) else ""
    match exc:
        case PolicyRefusedError(message=message, data=data):
            rule = data.get("rule") if isinstance(data, dict) else None
            named = f" (rule: {rule})" if isinstance(rule, str) and rule not in message else ""
            if rule == "allow_shell":  # ccx's words for it: --shell, and the daemon's option
                named += (
                    " — run it as ccx run -- sh -c LINE, or start the daemon with --allow-shell"
                )
            return Failure(f"ccx: refused by the daemon's policy: {message}{named}{hint}", own)
        case SpawnFailedError(message=message) if message.startswith(NO_JOURNAL):
            # The daemon's state, not the command: the command was never tried.
            return Failure(
                f"ccx: the daemon cannot keep a durable run ({message}) — its state directory "
                "(ccx serve --state-dir) is not usable: fix it, or run without --durable "
                "and --detach",
                own,
            )
        case SpawnFailedError(message=message):
            status = ExitStatus.SPAWN_FAILED if command == "run" else ExitStatus.FAILED
            return Failure(f"ccx: could not start the command: {message}{hint}", status)
        case RunNotFoundError(data=data):
            run = data.get("run") if isinstance(data, dict) else None
            which = f"no run {run}" if run else "no such run"
            return Failure(
                f"ccx: {which} for you at {target.url} — {target.ccx('ps')} lists your runs", own
            )
        case ServerError(message=message, code=code):
            return Failure(f"ccx: {usage_text(message)} (error {code})", own)
        case JournalUnreadable():
            return Failure(unreadable_journal(exc, target), own)
        case ConnectionLost():
            return Failure(f"ccx: lost the connection to {target.url}: {exc}", own)
    return Failure(f"ccx: {exc}", own)


def unreadable_journal(exc: JournalUnreadable, target: Target) -> str:
    """The line for a follow the daemon ended because it could not read the run's journal:
    a read failure, not a write (the run does not wait for anything), nor a lost connection."""
    again = target.ccx("attach", exc.run, "--from", str(exc.last_seq))
    return (
        f"ccx: the daemon cannot read the journal of run {exc.run} ({exc.reason}), so it "
        f"shows nothing of it after seq {exc.last_seq}; the run itself is not affected — "
        f"{again} tries again"
    )


# A request's field as the ccx command line names it, where that is not --<field>; None: the
# reason says enough on its own (a positional argument).
FLAG_OF_FIELD: dict[str, str | None] = {
    "session": "--resume",
    "resume": "--resume",
    "allowed_tools": "--allowed-tool",
    "prompt": "--prompt",
    "signal": None,
    "argv": None,
    "content": None,
    "run": None,
    "from_seq": "--from",
}
FIELD_PATH = re.compile(r"(?P<reason>[^;]+?) @ \$\.params\.(?P<field>\w+)[\w.\[\]]*")


def usage_text(text: str) -> str:
    """A request check's words for the command line: "--timeout: must be a positive number
    of seconds", not "must be ... @ $.params.timeout" (the protocol's path of the field)."""

    def plain(found: re.Match[str]) -> str:
        field = found["field"]
        flag = FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-"))
        return found["reason"] if flag is None else f"{flag}: {found['reason']}"

    return FIELD_PATH.sub(plain, text.removeprefix("Invalid params: "))
