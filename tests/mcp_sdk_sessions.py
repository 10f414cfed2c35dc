"""Claude session scenarios through an official MCP Python SDK client — 1.x (its WebSocket
client, the handshake era) or 2.x (``Client`` over tests/mcp_sdk2_client.py's transport, the
2026-07-28 era), whichever the python running this has: permission decisions, a durable
session taken over by a second client, a session resumed after the daemon was killed, a call
cancelled the SDK's way while its message waits behind another client's turn.

Run by tests/executor/test_claude_mcp_scenarios.py in an SDK's virtualenv:
``python tests/mcp_sdk_sessions.py URL SCENARIO ARGS...``; prints one JSON object on stdout.
Each call of the script is one MCP connection; a scenario that spans connections is several.
The scenarios see the SDK as one function: a tool call, answered with the result as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

warnings.simplefilter("ignore", DeprecationWarning)

Tool = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
# A tool call that is given up `after` seconds (the call still waiting): the SDK's cancel.
Abandon = Callable[[str, dict[str, Any], float], Awaitable[None]]


class Sdk:
    """A connected SDK client: call it for a tool call; `abandon` gives one up."""

    def __init__(self, call: Tool, abandon: Abandon) -> None:
        self._call = call
        self.abandon = abandon

    async def __call__(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self._call(name, arguments)


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[tuple[Sdk, str]]:
    """A connected SDK client, and the era it negotiated."""
    try:
        from mcp.client.websocket import websocket_client  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # 2.x: no WebSocket client of its own
        import anyio  # type: ignore[import-not-found, unused-ignore]
        from mcp.client.client import Client  # type: ignore[import-not-found, unused-ignore]
        from mcp_sdk2_client import websocket_transport

        async with Client(websocket_transport(url)) as client:

            async def call2(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
                result = await client.call_tool(name, arguments)
                return dict(result.model_dump(by_alias=True, mode="json", exclude_none=True))

            async def abandon2(name: str, arguments: dict[str, Any], after: float) -> None:
                with anyio.move_on_after(after):  # 2.x sends notifications/cancelled for it
                    await client.call_tool(name, arguments)

            yield Sdk(call2, abandon2), str(client.protocol_version)
        return
    import anyio
    from mcp import ClientSession, types  # type: ignore[import-not-found, unused-ignore]

    async with websocket_client(url) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()

        async def call1(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            result = await session.call_tool(name, arguments)
            return dict(result.model_dump(by_alias=True, mode="json", exclude_none=True))

        async def abandon1(name: str, arguments: dict[str, Any], after: float) -> None:
            request_id = session._request_id  # the SDK numbers requests; the call gets this id
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.call_tool, name, arguments)
                await anyio.sleep(after)
                # 1.x gives a call up without telling the server: the client sends the cancel.
                params = types.CancelledNotificationParams(requestId=request_id, reason="test")
                await session.send_notification(
                    types.ClientNotification(types.CancelledNotification(params=params))
                )
                tg.cancel_scope.cancel()

        yield Sdk(call1, abandon1), str(init.protocolVersion)


async def _until(tool: Tool, run: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll claude_session until `done` holds (bounded by the test's timeout)."""
    while True:
        answer = (await tool("claude_session", {"run": run})).get("structuredContent") or {}
        if done(answer):
            return answer
        await asyncio.sleep(0.1)


def _turn_ended(turn: int) -> Callable[[dict[str, Any]], bool]:
    def done(view: dict[str, Any]) -> bool:
        turns = {t["turn"]: t for t in view.get("turns_recorded", [])}
        return view.get("state") == "idle" and bool(turns.get(turn, {}).get("ended"))

    return done


async def _events(tool: Tool, run: str, from_seq: int = 0) -> list[dict[str, Any]]:
    """The run's events after `from_seq` through read_output, page by page, up to its last."""
    events: list[dict[str, Any]] = []
    while True:
        page = (
            await tool("read_output", {"run": run, "from_seq": from_seq, "max_bytes": 1_000_000})
        ).get("structuredContent") or {}
        events.extend(page["events"])
        from_seq = page["next_seq"]
        if from_seq >= page["last_seq"]:
            return events


async def ask(tool: Tool, cwd: str, target: str, answer: str) -> dict[str, Any]:
    """A turn that asks to touch `target`; `answer` is "deny" (through claude_permission) or
    "none" (left to the daemon: its timeout's default, or an operator's rule)."""
    started = await tool(
        "claude_start", {"prompt": f"[tool:touch {target}]", "cwd": cwd, "wait": False}
    )
    run = (started.get("structuredContent") or {})["run"]
    out: dict[str, Any] = {"started": (started)}
    if answer == "deny":
        asked = await _until(tool, run, lambda s: bool(s.get("pending")))
        out["asked"] = asked
        request = asked["pending"][0]["request"]
        out["answer"] = await tool(
            "claude_permission",
            {"run": run, "request": request, "behavior": "deny", "message": "not today"},
        )
    out["read"] = await _until(tool, run, _turn_ended(1))
    out["events"] = await _events(tool, run)
    decided = [e for e in out["events"] if e["type"] == "claude.permission_decided"]
    if decided:  # a late answer is refused, naming who decided
        out["late"] = await tool(
            "claude_permission",
            {"run": run, "request": decided[0]["request"], "behavior": "allow"},
        )
    out["closed"] = await tool("claude_close", {"run": run})
    return out


async def durable_ask(tool: Tool, cwd: str, target: str) -> dict[str, Any]:
    """A durable session whose turn waits for a permission; the events so far; then this
    client goes away without answering."""
    started = await tool(
        "claude_start",
        {"prompt": f"[tool:touch {target}]", "cwd": cwd, "durable": True, "wait": False},
    )
    run = (started.get("structuredContent") or {})["run"]
    asked = await _until(
        tool, run, lambda s: bool(s.get("pending")) and s.get("state") == "requires_action"
    )
    events = await _events(tool, run)
    return {"run": run, "asked": asked, "events": events}


async def durable_answer(tool: Tool, run: str, from_seq: str) -> dict[str, Any]:
    """A new client finds the durable session, answers its pending request, waits for the
    turn, closes it; the events after `from_seq`, and the whole stream once it is over."""
    found = (await tool("claude_session", {"run": run})).get("structuredContent") or {}
    request = found["pending"][0]["request"]
    answer = await tool("claude_permission", {"run": run, "request": request, "behavior": "allow"})
    read = await _until(tool, run, _turn_ended(1))
    closed = await tool("claude_close", {"run": run})
    return {
        "found": found,
        "answer": (answer),
        "read": read,
        "closed": (closed),
        "after": await _events(tool, run, int(from_seq)),
        "whole": await _events(tool, run),
    }


async def before_kill(tool: Tool, cwd: str) -> dict[str, Any]:
    """A durable session: one turn, then a long one left running (the daemon is killed)."""
    first = await tool(
        "claude_start", {"prompt": "remember the word PELICAN", "cwd": cwd, "durable": True}
    )
    run = (first.get("structuredContent") or {})["run"]
    slow = await tool(
        "claude_send", {"run": run, "content": "a slow one [slow:300]", "wait": False}
    )
    running = await _until(tool, run, lambda s: s.get("turn") == 2 and s.get("state") == "running")
    return {"run": run, "first": (first), "slow": (slow), "running": running}


async def after_kill(tool: Tool, run: str, claude_session: str, cwd: str) -> Any:
    """After the restart: the run is lost; claude_start with resume continues the session,
    and a second resume while it lives is refused."""
    status = await tool("status", {"run": run})
    lost_view = await tool("claude_session", {"run": run})
    replayed = await _events(tool, run)
    resumed = await tool(
        "claude_start", {"resume": claude_session, "prompt": "which word?", "cwd": cwd}
    )
    new_run = (resumed.get("structuredContent") or {})["run"]
    busy = await tool("claude_start", {"resume": claude_session, "cwd": cwd, "wait": False})
    view = await tool("claude_session", {"run": new_run})
    new_status = await tool("status", {"run": new_run})
    closed = await tool("claude_close", {"run": new_run})
    return {
        "status": (status),
        "lost_view": (lost_view),
        "replayed": replayed,
        "resumed": (resumed),
        "busy": (busy),
        "view": (view),
        "new_status": (new_status),
        "closed": (closed),
    }


async def queued_cancel(tool: Tool, alice_url: str, cwd: str) -> dict[str, Any]:
    """Bob's slow turn runs on a durable session; Alice's message waits behind it and she
    gives her call up (her own connection, to `alice_url`): which turns were interrupted."""
    async with connect(alice_url) as (alice, _):
        started = await tool("claude_start", {"cwd": cwd, "durable": True})
        run = (started.get("structuredContent") or {})["run"]

        async def bobs_turn() -> dict[str, Any]:
            return await tool("claude_send", {"run": run, "content": "[slow:30]", "id": "bob-msg"})

        bob = asyncio.create_task(bobs_turn())
        await _until(alice, run, lambda s: s.get("state") == "running")
        alices = {"run": run, "content": "[slow:30]", "id": "alice-msg"}
        await alice.abandon("claude_send", alices, 0.5)
        bobs = await bob
        read = await _until(alice, run, _turn_ended(2))
        closed = await alice("claude_close", {"run": run})
    return {"run": run, "bob": bobs, "read": read, "closed": closed}


async def main(url: str, scenario: str, *args: str) -> None:
    scenarios: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
        "ask": ask,
        "durable_ask": durable_ask,
        "durable_answer": durable_answer,
        "before_kill": before_kill,
        "after_kill": after_kill,
        "queued_cancel": queued_cancel,
    }
    async with connect(url) as (tool, era):
        out = {"protocol_version": era, **await scenarios[scenario](tool, *args)}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], *sys.argv[3:]))
