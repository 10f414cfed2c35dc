"""What `ccx claude` says: a tool's input, a turn's end, a decision, the help line."""

from __future__ import annotations

import os
import re
from typing import Any

import orjson

from cc_executor.executor.client.events import ClaudeTurnEnded
from cc_executor.executor.client.parsers import Target

# A line the CLI replays of its own: a local command's output (set_model: "Set model to X").
LOCAL_COMMAND = re.compile(r"<local-command-(stdout|stderr)>(.*)</local-command-\1>", re.DOTALL)
# How much of a tool's input a permission prompt shows.
INPUT_SHOWN = 600
HELP = (
    "ccx: a line is a message for Claude; y / n [REASON] answers a permission prompt; "
    "Ctrl-C interrupts the turn; Ctrl-D closes the session (attach: leaves it). "
    "Commands: /model NAME, /mode MODE, /interrupt, /status, /detach, /close, /help"
)


def input_text(tool: str | None, value: Any) -> str:
    """A tool's input as a prompt shows it: a Bash command as itself, the rest as JSON."""
    command = value.get("command") if isinstance(value, dict) else None
    text = command if tool == "Bash" and isinstance(command, str) else orjson.dumps(value).decode()
    return text if len(text) <= INPUT_SHOWN else text[:INPUT_SHOWN] + "…"


def turn_line(ended: ClaudeTurnEnded) -> str:
    """`ccx: turn 2 done (1.4 s, $0.0012)`, interrupted or failed likewise."""
    result = ended.result
    facts = []
    duration = result.get("duration_ms")
    if isinstance(duration, int | float):
        facts.append(f"{duration / 1000:.1f} s")
    cost = result.get("cost_usd")
    if isinstance(cost, int | float):
        facts.append(f"${cost:.4f}")
    how = "done"
    if ended.interrupted:
        how = "interrupted"
    elif result.get("is_error"):
        how = f"failed: {result.get('result') or result.get('subtype')}"
    return f"ccx: turn {ended.turn} {how}" + (f" ({', '.join(facts)})" if facts else "")


def decided(behavior: str) -> str:
    return "allowed" if behavior == "allow" else "denied"


def decided_line(request: str, behavior: str, by: str) -> str:
    """A request someone else decided: who, in words (`cancelled`: nobody answered it)."""
    if by == "cancelled":
        return f"ccx: request {request} was withdrawn (the turn or the session ended first)"
    return f"ccx: request {request} was {decided(behavior)} by {by}"


def local_command_output(text: str) -> str | None:
    """The CLI's own output of a local command (not anyone's message), or None."""
    found = LOCAL_COMMAND.fullmatch(text.strip())
    return None if found is None else found.group(2).strip()


def paused_line(paused: bool, target: Target, run: str) -> str:
    if paused:
        return (
            f"ccx: the session is paused ({target.ccx('resume', run)} resumes it); "
            "a line typed now waits for it"
        )
    return "ccx: the session is resumed"


def lost_line(exc: Exception, target: Target, session: Any) -> str:
    """The connection is gone for good; a durable session's record says what became of it,
    and one that is not durable ends with its connection."""
    if session.durable:
        then = f"; {target.ccx('claude', 'attach', session.id)} says what became of it"
    else:
        then = "; a session that is not durable ends with its connection"
    return f"ccx: lost the session: {exc}{then}"


def resume_hint(target: Target, claude_session: str, cwd: str | None) -> str:
    """How to continue a session's conversation in a new process (its transcript is the
    CLI's, kept by the daemon's machine; `--resume` looks for it in the session's cwd)."""
    here = target.local and cwd is not None and _same_dir(cwd, os.getcwd())
    where = () if cwd is None or here else ("--cwd", cwd)
    resume = target.ccx("claude", "--resume", claude_session, *where)
    return f"; {resume} continues its conversation"


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def unanswered_line(target: Target, session: Any, patience: float, reconnecting: bool) -> str:
    """The daemon has not answered for `patience` seconds; what Ctrl-C would do."""
    attach = target.ccx("claude", "attach", session.id)
    if reconnecting:  # the connection went (a durable session's: it is sought again)
        return (
            f"ccx: lost the connection to {target.url}, not back after {patience:g} s; "
            f"reconnecting — Ctrl-C leaves ({attach} says what became of the session)"
        )
    if session.durable:
        then = f"the session goes on ({attach} rejoins it)"
    else:
        then = "the daemon ends the session when it sees ccx gone (it is not durable)"
    return (
        f"ccx: the daemon at {target.url} is not answering (nothing for {patience:g} s); "
        f"waiting for it — Ctrl-C leaves, and {then}"
    )


def abandoned_line(target: Target, session: Any, reconnecting: bool) -> str:
    """Ctrl-C while the daemon did not answer: ccx leaves without it."""
    if reconnecting:
        attach = target.ccx("claude", "attach", session.id)
        return f"ccx: left session {session.id}; {attach} says what became of it"
    if session.durable:
        then = f"it goes on ({target.ccx('claude', 'attach', session.id)} rejoins it)"
    else:
        then = "the daemon ends it when it sees ccx gone (it is not durable)"
    return f"ccx: left session {session.id} without the daemon's answer; {then}"
