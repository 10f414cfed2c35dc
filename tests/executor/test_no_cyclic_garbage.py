"""A run and its connection, once over, are freed by reference counting alone.

Nothing the daemon makes for a run or a connection is left in a reference cycle: before, every
finished run and its connection (about 140 objects: the run, its pump, the session and its
parts, the WebSocket and its protocol state) waited as cyclic garbage for the collector's next
full pass (bench/analysis.md, W5).  Here a real daemon serves real connections over loopback —
runs that complete, fail, are paused and resumed, are left running by a client that goes, a
durable run and its follower, an MCP tool call, requests that are refused — and the collector,
saving what it finds, must find nothing of the daemon's.
"""

from __future__ import annotations

import collections
import gc
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import trio
from ccx_testing import Served, wait_until
from mcp_testing import Recording, mcp_client

from bench.rawws import RawWebSocket, open_raw_websocket


async def _message(raw: RawWebSocket) -> dict[str, Any]:
    _opcode, payload = await raw.read_frame()
    message: dict[str, Any] = orjson.loads(payload)
    return message


async def _call(raw: RawWebSocket, request_id: int, method: str, **params: Any) -> None:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    await raw.send_frame(0x1, orjson.dumps(request))


async def _until(raw: RawWebSocket, done: Any) -> None:
    while not done(await _message(raw)):
        pass


def _completed(message: dict[str, Any]) -> bool:
    return bool(message.get("method") == "process.completed")


async def _connections(port: int) -> None:
    """One connection for each way a run or a request can end."""
    for argv in (["seq", "1", "300"], ["sh", "-c", "echo no >&2; exit 3"]):
        async with open_raw_websocket(port) as raw:
            await _message(raw)  # connected
            await _call(raw, 1, "execute", argv=argv)
            await _until(raw, _completed)
    async with open_raw_websocket(port) as raw:  # durable, followed by another connection
        await _message(raw)
        await _call(raw, 1, "execute", argv=["seq", "1", "300"], durable=True)
        while "result" not in (reply := await _message(raw)):
            pass
        await _until(raw, _completed)
        async with open_raw_websocket(port) as other:
            await _message(other)
            await _call(other, 1, "attach", run=reply["result"]["run"], from_seq=0)
            await _until(other, _completed)
    async with open_raw_websocket(port) as raw:  # paused, resumed, cancelled
        await _message(raw)
        await _call(raw, 1, "execute", argv=["sleep", "60"])
        await _until(raw, lambda m: m.get("id") == 1)
        for n, action in enumerate(("PAUSE", "RESUME", "CANCEL"), start=2):
            await _call(raw, n, "control", type=action)
            await _until(raw, lambda m, n=n: m.get("id") == n)
        await _until(raw, _completed)
    async with open_raw_websocket(port) as raw:  # gone with its run still running
        await _message(raw)
        await _call(raw, 1, "execute", argv=["sleep", "60"])
        await _until(raw, lambda m: m.get("id") == 1)
    async with mcp_client(f"ws://127.0.0.1:{port}/", Recording()) as mcp:  # an MCP tool call
        call = {"name": "execute", "arguments": {"argv": ["true"]}}
        result = await mcp.result("tools/call", call)
        assert result["isError"] is False
    async with open_raw_websocket(port) as raw:  # refused requests, a bad frame
        await _message(raw)
        await _call(raw, 1, "no.such.method")
        await _until(raw, lambda m: m.get("id") == 1)
        await _call(raw, 2, "execute", argv=[])
        await _until(raw, lambda m: m.get("id") == 2)
        await raw.send_frame(0x1, b"{not json")
        await _until(raw, lambda m: "error" in m)


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """What the collector finds unreachable from here on, kept instead of freed."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_finished_runs_and_connections_leave_no_cyclic_garbage(
    served: Served, saved_garbage: list[Any]
) -> None:
    daemon = served.daemon
    with trio.fail_after(60):
        await _connections(served.port)
        # The server's side of every connection has ended too, and every run with it.
        await wait_until(lambda: not daemon.sessions and daemon.runs.live == 0, bound=30)
        await trio.sleep(0.1)  # the session tasks' last steps after leaving the set
    gc.collect()
    ours = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}"
        for o in saved_garbage
        if type(o).__module__.startswith("cc_executor.")
    )
    assert daemon.runs.started == 6
    assert not ours, ours.most_common(20)
