"""Drive cc-executor with the official MCP Python SDK 2.x over a small WebSocket transport.

The 2.x SDK has no WebSocket transport; ``Client`` takes any async context manager that yields
a pair of anyio streams of ``SessionMessage``, which is all this file adds.  In its default
"auto" mode the client probes ``server/discover`` (the 2026-07-28 era).
Run by tests/executor/test_mcp_sdk.py: ``python tests/mcp_sdk2_client.py URL SCENARIO``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio  # type: ignore[import-not-found, unused-ignore]
from mcp.client.client import Client  # type: ignore[import-not-found, unused-ignore]
from mcp.shared.message import SessionMessage  # type: ignore[import-not-found, unused-ignore]
from mcp_types import jsonrpc_message_adapter  # type: ignore[import-not-found, unused-ignore]
from websockets.asyncio.client import connect  # type: ignore[import-not-found, unused-ignore]

SLOW = ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"]


@asynccontextmanager
async def websocket_transport(url: str) -> AsyncIterator[tuple[Any, Any]]:
    """One JSON-RPC message per text frame, subprotocol "mcp"."""
    read_writer, read_stream = anyio.create_memory_object_stream(0)
    write_stream, write_reader = anyio.create_memory_object_stream(0)
    async with connect(url, subprotocols=["mcp"]) as ws:

        async def reader() -> None:
            async with read_writer:
                async for text in ws:
                    message = jsonrpc_message_adapter.validate_json(text)
                    await read_writer.send(SessionMessage(message))

        async def writer() -> None:
            async with write_reader:
                async for item in write_reader:
                    data = item.message.model_dump(by_alias=True, mode="json", exclude_none=True)
                    await ws.send(json.dumps(data))

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            yield read_stream, write_stream
            tg.cancel_scope.cancel()


def dump(value: Any) -> Any:
    return value.model_dump(by_alias=True, mode="json", exclude_none=True)


async def basic(client: Any) -> dict[str, Any]:
    progress: list[dict[str, Any]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": value, "message": message})

    tools = await client.list_tools()
    result = await client.call_tool("execute", {"argv": SLOW}, progress_callback=on_progress)
    return {
        "tools": [dump(t) for t in tools.tools],
        "progress": progress,
        "result": dump(result),
    }


async def cancel(client: Any) -> dict[str, Any]:
    started = anyio.Event()
    progress: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)
        started.set()

    async with anyio.create_task_group() as tg:

        async def call() -> None:
            await client.call_tool(
                "execute", {"argv": ["sleep", "60"]}, progress_callback=on_progress
            )

        tg.start_soon(call)
        await started.wait()
        tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled for the call
    run = (progress[0] or "").rsplit(" ", 1)[-1]
    status: dict[str, Any] = {}
    for _ in range(100):
        answer = await client.call_tool("status", {"run": run})
        status = answer.structured_content or {}
        if status.get("state") == "completed":
            break
        await asyncio.sleep(0.1)
    return {"run": run, "status": status}


async def claude_session(client: Any, cwd: str) -> dict[str, Any]:
    """A live Claude session in the 2026 era: start idle, two turns (the second's text as
    progress, word by word), the session read, closed."""
    progress: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    started = await client.call_tool("claude_start", {"cwd": cwd, "include_partial_messages": True})
    run = (started.structured_content or {})["run"]
    first = await client.call_tool("claude_send", {"run": run, "content": "say hi"})
    second = await client.call_tool(
        "claude_send", {"run": run, "content": "[slow:5]"}, progress_callback=on_progress
    )
    read = await client.call_tool("claude_session", {"run": run})
    closed = await client.call_tool("claude_close", {"run": run})
    return {
        "started": dump(started),
        "first": dump(first),
        "second": dump(second),
        "progress": progress,
        "read": dump(read),
        "closed": dump(closed),
    }


async def main(url: str, scenario: str, *args: str) -> None:
    async with Client(websocket_transport(url)) as client:
        out: dict[str, Any] = {"protocol_version": client.protocol_version}
        scenarios: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "basic": basic,
            "cancel": cancel,
            "claude_session": claude_session,
        }
        out.update(await scenarios[scenario](client, *args))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], *sys.argv[3:]))
