"""Claude session scenarios through the official MCP Python SDK 1.x WebSocket client (asyncio):
permission decisions, a durable session taken over by a second client, a session resumed after
the daemon was killed.

Run by tests/executor/test_claude_mcp_scenarios.py in a virtualenv with ``mcp[ws]<2``:
``python tests/mcp_sdk1_sessions.py URL SCENARIO ARGS...``; prints one JSON object on stdout.
Each call of the script is one MCP connection; a scenario that spans connections is several.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import ClientSession  # type: ignore[import-not-found, unused-ignore]
from mcp.client.websocket import websocket_client  # type: ignore[import-not-found, unused-ignore]
from mcp_sdk1_client import _dump, _session_until

warnings.simplefilter("ignore", DeprecationWarning)


def _turn_ended(turn: int) -> Callable[[dict[str, Any]], bool]:
    def done(view: dict[str, Any]) -> bool:
        turns = {t["turn"]: t for t in view.get("turns_recorded", [])}
        return view.get("state") == "idle" and bool(turns.get(turn, {}).get("ended"))

    return done


async def _events(session: ClientSession, run: str, from_seq: int = 0) -> list[dict[str, Any]]:
    """The run's events after `from_seq` through read_output, page by page, up to its last."""
    events: list[dict[str, Any]] = []
    while True:
        page = (
            await session.call_tool(
                "read_output", {"run": run, "from_seq": from_seq, "max_bytes": 1_000_000}
            )
        ).structuredContent or {}
        events.extend(page["events"])
        from_seq = page["next_seq"]
        if from_seq >= page["last_seq"]:
            return events


async def ask(session: ClientSession, cwd: str, target: str, answer: str) -> dict[str, Any]:
    """A turn that asks to touch `target`; `answer` is "deny" (through claude_permission) or
    "none" (left to the daemon: its timeout's default, or an operator's rule)."""
    started = await session.call_tool(
        "claude_start", {"prompt": f"[tool:touch {target}]", "cwd": cwd, "wait": False}
    )
    run = (started.structuredContent or {})["run"]
    out: dict[str, Any] = {"started": _dump(started)}
    if answer == "deny":
        asked = await _session_until(session, run, lambda s: bool(s.get("pending")))
        out["asked"] = asked
        request = asked["pending"][0]["request"]
        out["answer"] = _dump(
            await session.call_tool(
                "claude_permission",
                {"run": run, "request": request, "behavior": "deny", "message": "not today"},
            )
        )
    out["read"] = await _session_until(session, run, _turn_ended(1))
    out["events"] = await _events(session, run)
    decided = [e for e in out["events"] if e["type"] == "claude.permission_decided"]
    if decided:  # a late answer is refused, naming who decided
        out["late"] = _dump(
            await session.call_tool(
                "claude_permission",
                {"run": run, "request": decided[0]["request"], "behavior": "allow"},
            )
        )
    out["closed"] = _dump(await session.call_tool("claude_close", {"run": run}))
    return out


async def durable_ask(session: ClientSession, cwd: str, target: str) -> dict[str, Any]:
    """A durable session whose turn waits for a permission; the events so far; then this
    client goes away without answering."""
    started = await session.call_tool(
        "claude_start",
        {"prompt": f"[tool:touch {target}]", "cwd": cwd, "durable": True, "wait": False},
    )
    run = (started.structuredContent or {})["run"]
    asked = await _session_until(
        session, run, lambda s: bool(s.get("pending")) and s.get("state") == "requires_action"
    )
    events = await _events(session, run)
    return {"run": run, "asked": asked, "events": events}


async def durable_answer(session: ClientSession, run: str, from_seq: str) -> dict[str, Any]:
    """A new client finds the durable session, answers its pending request, waits for the
    turn, closes it; the events after `from_seq`, and the whole stream once it is over."""
    found = (await session.call_tool("claude_session", {"run": run})).structuredContent or {}
    request = found["pending"][0]["request"]
    answer = await session.call_tool(
        "claude_permission", {"run": run, "request": request, "behavior": "allow"}
    )
    read = await _session_until(session, run, _turn_ended(1))
    closed = await session.call_tool("claude_close", {"run": run})
    return {
        "found": found,
        "answer": _dump(answer),
        "read": read,
        "closed": _dump(closed),
        "after": await _events(session, run, int(from_seq)),
        "whole": await _events(session, run),
    }


async def before_kill(session: ClientSession, cwd: str) -> dict[str, Any]:
    """A durable session: one turn, then a long one left running (the daemon is killed)."""
    first = await session.call_tool(
        "claude_start", {"prompt": "remember the word PELICAN", "cwd": cwd, "durable": True}
    )
    run = (first.structuredContent or {})["run"]
    slow = await session.call_tool(
        "claude_send", {"run": run, "content": "a slow one [slow:300]", "wait": False}
    )
    running = await _session_until(
        session, run, lambda s: s.get("turn") == 2 and s.get("state") == "running"
    )
    return {"run": run, "first": _dump(first), "slow": _dump(slow), "running": running}


async def after_kill(session: ClientSession, run: str, claude_session: str, cwd: str) -> Any:
    """After the restart: the run is lost; claude_start with resume continues the session,
    and a second resume while it lives is refused."""
    status = await session.call_tool("status", {"run": run})
    lost_view = await session.call_tool("claude_session", {"run": run})
    replayed = await _events(session, run)
    resumed = await session.call_tool(
        "claude_start", {"resume": claude_session, "prompt": "which word?", "cwd": cwd}
    )
    new_run = (resumed.structuredContent or {})["run"]
    busy = await session.call_tool(
        "claude_start", {"resume": claude_session, "cwd": cwd, "wait": False}
    )
    view = await session.call_tool("claude_session", {"run": new_run})
    new_status = await session.call_tool("status", {"run": new_run})
    closed = await session.call_tool("claude_close", {"run": new_run})
    return {
        "status": _dump(status),
        "lost_view": _dump(lost_view),
        "replayed": replayed,
        "resumed": _dump(resumed),
        "busy": _dump(busy),
        "view": _dump(view),
        "new_status": _dump(new_status),
        "closed": _dump(closed),
    }


async def main(url: str, scenario: str, *args: str) -> None:
    scenarios: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
        "ask": ask,
        "durable_ask": durable_ask,
        "durable_answer": durable_answer,
        "before_kill": before_kill,
        "after_kill": after_kill,
    }
    async with websocket_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        out = await scenarios[scenario](session, *args)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], *sys.argv[3:]))
