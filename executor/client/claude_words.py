"""What `ccx claude` says: a tool's input, a turn's end, a decision, the help line."""

from __future__ import annotations

from typing import Any

import orjson

from cc_executor.executor.client.events import ClaudeTurnEnded

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
