"""What `ccx claude` says: a tool's input, a turn's end, a decision, the help line."""

from __future__ import annotations

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
    """The connection is gone for good; a durable session's record says what became of it."""
    attach = target.ccx("claude", "attach", session.id)
    then = f"; {attach} says what became of it" if session.durable else ""
    return f"ccx: lost the session: {exc}{then}"
