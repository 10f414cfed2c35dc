"""Drive cc-executor with the official MCP Python SDK 1.x WebSocket client (asyncio).

Run by tests/executor/test_mcp_sdk.py in a virtualenv with ``mcp[ws]<2``:
``python tests/mcp_sdk1_client.py URL SCENARIO``; prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import anyio  # type: ignore[import-not-found, unused-ignore]
from mcp import ClientSession, types  # type: ignore[import-not-found, unused-ignore]
from mcp.client.websocket import websocket_client  # type: ignore[import-not-found, unused-ignore]

warnings.simplefilter("ignore", DeprecationWarning)

SLOW = ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"]


async def basic(session: ClientSession) -> dict[str, Any]:
    progress: list[dict[str, Any]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": value, "message": message})

    tools = await session.list_tools()
    result = await session.call_tool("execute", {"argv": SLOW}, progress_callback=on_progress)
    bad = await session.call_tool("execute", {"argv": "not a list"})
    return {
        "tools": [t.model_dump(by_alias=True, exclude_none=True) for t in tools.tools],
        "progress": progress,
        "result": result.model_dump(by_alias=True, exclude_none=True),
        "bad": bad.model_dump(by_alias=True, exclude_none=True),
    }


async def cancel(session: ClientSession) -> dict[str, Any]:
    started = anyio.Event()
    progress: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)
        started.set()

    request_id = session._request_id  # the SDK numbers requests; the call gets this id
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            await session.call_tool(
                "execute", {"argv": ["sleep", "60"]}, progress_callback=on_progress
            )

        tg.start_soon(call)
        await started.wait()
        run = (progress[0] or "").rsplit(" ", 1)[-1]
        params = types.CancelledNotificationParams(requestId=request_id, reason="test")
        await session.send_notification(
            types.ClientNotification(types.CancelledNotification(params=params))
        )
        tg.cancel_scope.cancel()  # the server does not answer a cancelled request
    status: dict[str, Any] = {}
    for _ in range(100):
        answer = await session.call_tool("status", {"run": run})
        status = answer.structuredContent or {}
        if status.get("state") == "completed":
            break
        await asyncio.sleep(0.1)
    return {"run": run, "status": status}


async def claude(session: ClientSession, cwd: str, session_id: str) -> dict[str, Any]:
    """Claude through MCP: a stalled call ended by the watchdog, while it runs a second call
    for the same Claude session refused, then a plain call that completes."""
    stalled = await session.call_tool(
        "claude",
        {
            "prompt": "[stall]",
            "cwd": cwd,
            "session_id": session_id,
            "idle_timeout": 3,
            "idle_action": "cancel",
            "wait": False,
        },
    )
    run = (stalled.structuredContent or {}).get("run")
    busy = await session.call_tool("claude", {"prompt": "again", "resume": session_id, "cwd": cwd})
    status: dict[str, Any] = {}
    for _ in range(600):
        answer = await session.call_tool("status", {"run": run})
        status = answer.structuredContent or {}
        if status.get("state") == "completed":
            break
        await asyncio.sleep(0.1)
    plain = await session.call_tool("claude", {"prompt": "say hi", "cwd": cwd})
    return {
        "stalled": stalled.model_dump(by_alias=True, exclude_none=True),
        "busy": busy.model_dump(by_alias=True, exclude_none=True),
        "status": status,
        "plain": plain.model_dump(by_alias=True, exclude_none=True),
    }


async def linger(session: ClientSession, cwd: str) -> dict[str, Any]:
    """A Claude call whose CLI lingers after its result: ended by the post-result grace."""
    result = await session.call_tool("claude", {"prompt": "say hi", "cwd": cwd})
    return {"result": result.model_dump(by_alias=True, exclude_none=True)}


async def resume(session: ClientSession, cwd: str, session_id: str) -> dict[str, Any]:
    """A Claude call resuming a session (the caller makes sure another run holds it)."""
    result = await session.call_tool(
        "claude", {"prompt": "again", "resume": session_id, "cwd": cwd}
    )
    return {"result": result.model_dump(by_alias=True, exclude_none=True)}


def _dump(result: Any) -> dict[str, Any]:
    return dict(result.model_dump(by_alias=True, exclude_none=True))


async def _session_until(
    session: ClientSession, run: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll claude_session until `done` holds (bounded by the test's timeout)."""
    while True:
        answer = (await session.call_tool("claude_session", {"run": run})).structuredContent
        if done(answer or {}):
            return answer or {}
        await asyncio.sleep(0.1)


async def claude_session(session: ClientSession, cwd: str) -> dict[str, Any]:
    """A live Claude session through MCP: start with a prompt (waits for turn 1, progress
    carries its text), a second turn, an interrupted streaming turn, a permission request
    answered through MCP (a second answer refused), the session read, then closed."""
    progress: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    first = await session.call_tool(
        "claude_start",
        {"prompt": "say hi", "cwd": cwd, "include_partial_messages": True},
        progress_callback=on_progress,
    )
    run = (first.structuredContent or {})["run"]
    second = await session.call_tool("claude_send", {"run": run, "content": "and again"})
    streamed: list[str | None] = []
    saw_chunks = anyio.Event()

    async def on_stream(value: float, total: float | None, message: str | None) -> None:
        streamed.append(message)
        if message and "chunk 2" in message:
            saw_chunks.set()

    slow: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            answer = await session.call_tool(
                "claude_send", {"run": run, "content": "[slow:300]"}, progress_callback=on_stream
            )
            slow.update(_dump(answer))

        tg.start_soon(call)
        await saw_chunks.wait()
        interrupted = await session.call_tool("claude_interrupt", {"run": run})
    touch = f"[tool:touch {cwd}/via-mcp.txt]"
    queued = await session.call_tool("claude_send", {"run": run, "content": touch, "wait": False})
    asked = await _session_until(session, run, lambda s: bool(s.get("pending")))
    request = asked["pending"][0]["request"]
    answer = await session.call_tool(
        "claude_permission", {"run": run, "request": request, "behavior": "allow"}
    )
    again = await session.call_tool(
        "claude_permission", {"run": run, "request": request, "behavior": "deny"}
    )
    read = await _session_until(
        session, run, lambda s: s.get("turns") == 4 and s.get("state") == "idle"
    )
    closed = await session.call_tool("claude_close", {"run": run})
    return {
        "first": _dump(first),
        "progress": progress,
        "second": _dump(second),
        "slow": slow,
        "streamed": streamed,
        "interrupted": _dump(interrupted),
        "queued": _dump(queued),
        "asked": asked,
        "answer": _dump(answer),
        "again": _dump(again),
        "read": read,
        "closed": _dump(closed),
    }


# Output whose JSON is six times its size (control characters), and plain output of 3 MB.
ESCAPED = "import sys; sys.stdout.write(chr(1) * 200000); sys.stderr.write(chr(27) * 200000)"
PLAIN = "import sys; sys.stdout.write('y' * 3000000)"


async def big(session: ClientSession) -> dict[str, Any]:
    """Results larger than the SDK's WebSocket takes (1 MiB: it closes with 1009) if sent whole:
    a run's escaped tails, and read_output pages of 1 MiB asked for, until the end."""
    escaped = await session.call_tool("execute", {"argv": [sys.executable, "-c", ESCAPED]})
    plain = await session.call_tool(
        "execute", {"argv": [sys.executable, "-c", PLAIN], "durable": True}
    )
    run = (plain.structuredContent or {})["run"]
    data, next_seq, pages = "", 0, 0
    while True:
        page = await session.call_tool(
            "read_output", {"run": run, "from_seq": next_seq, "max_bytes": 1048576}
        )
        read = page.structuredContent or {}
        data += "".join(e["data"] for e in read["events"] if e["type"] == "output")
        next_seq, pages = read["next_seq"], pages + 1
        if read["complete"]:
            break
    return {
        "escaped": escaped.model_dump(by_alias=True, exclude_none=True),
        "read_bytes": len(data),
        "read_exact": data == "y" * 3000000,
        "pages": pages,
    }


async def big_list(session: ClientSession) -> dict[str, Any]:
    """`list` of more runs than one 1 MiB answer holds (45 with a 30 KB argument each)."""
    runs = []
    for _ in range(45):
        done = await session.call_tool("execute", {"argv": ["echo", "p" * 30000], "durable": True})
        runs.append((done.structuredContent or {})["run"])
    listed = await session.call_tool("list", {})
    return {"started": runs, "list": listed.structuredContent}


async def long_args(session: ClientSession) -> dict[str, Any]:
    """A run of eight 120 KB arguments: its result and its status echo the argv."""
    done = await session.call_tool("execute", {"argv": ["true", *["a" * 120000] * 8]})
    run = (done.structuredContent or {})["run"]
    status = await session.call_tool("status", {"run": run})
    listed = await session.call_tool("list", {})
    return {
        "done": done.model_dump(by_alias=True, exclude_none=True),
        "status": status.model_dump(by_alias=True, exclude_none=True),
        "list": listed.model_dump(by_alias=True, exclude_none=True),
    }


async def main(url: str, scenario: str, *args: str) -> None:
    scenarios: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
        "basic": basic,
        "big": big,
        "big_list": big_list,
        "long_args": long_args,
        "cancel": cancel,
        "claude": claude,
        "linger": linger,
        "resume": resume,
        "claude_session": claude_session,
    }
    async with websocket_client(url) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        out: dict[str, Any] = {"init": init.model_dump(by_alias=True, exclude_none=True)}
        await session.send_ping()
        out.update(await scenarios[scenario](session, *args))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], *sys.argv[3:]))
