"""W5 client side: many simultaneous connections, each running `seq 1 N` to completion.

One trio task per connection over a hand-made WebSocket (bench/rawws.py): connect,
handshake, execute, read to `process.completed`, check the output.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import trio

from bench.rawws import HandshakeRefused, RawWebSocket, open_raw_websocket

CONNECTION_BOUND = 60.0


async def _message(raw: RawWebSocket) -> Any:
    """The next JSON-RPC message (a close frame ends the connection)."""
    opcode, payload = await raw.read_frame()
    if opcode == 0x8:
        raise EOFError("close frame")
    return orjson.loads(payload)


async def _send(raw: RawWebSocket, message: dict[str, Any]) -> None:
    await raw.send_frame(0x1, orjson.dumps(message))


async def _one(port: int, count: int, expected: str, marks: dict[str, list[float]]) -> bool:
    try:
        async with open_raw_websocket(port) as conn:
            return await _run_seq(conn, count, expected, marks)
    except HandshakeRefused:
        return False


async def _run_seq(
    conn: RawWebSocket, count: int, expected: str, marks: dict[str, list[float]]
) -> bool:
    greeting = await _message(conn)
    if greeting.get("method") != "connected":
        return False
    marks["sent"].append(time.perf_counter())
    await _send(
        conn,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "execute",
            "params": {"argv": ["seq", "1", str(count)]},
        },
    )
    pieces = []
    while True:
        message = await _message(conn)
        method = message.get("method")
        if method == "process.output":
            pieces.append(message["params"]["data"])
        elif method == "process.completed":
            completed = message["params"]
            break
        elif message.get("id") == 1:
            if "error" in message:
                return False
            marks["started"].append(time.perf_counter())
    return completed["status"] == "completed" and "".join(pieces) == expected


async def _main(port: int, connections: int, count: int) -> dict[str, Any]:
    expected = "".join(f"{i}\n" for i in range(1, count + 1))
    marks: dict[str, list[float]] = {"sent": [], "started": []}
    outcomes: list[bool] = []
    errors: list[str] = []

    async def one() -> None:
        try:
            outcomes.append(await _one(port, count, expected, marks))
        except (OSError, EOFError, ValueError, trio.BrokenResourceError) as exc:
            errors.append(repr(exc))
            outcomes.append(False)

    started = time.perf_counter()
    with trio.move_on_after(CONNECTION_BOUND):
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(one)
    wall = time.perf_counter() - started
    spawn_span = (
        max(marks["started"]) - min(marks["sent"]) if marks["started"] and marks["sent"] else 0.0
    )
    return {
        "connections": connections,
        "successes": sum(outcomes),
        "errors": errors[:5],
        "wall": wall,
        "runs_started": len(marks["started"]),
        "runs_per_s": len(marks["started"]) / spawn_span if spawn_span else 0.0,
    }


def concurrency(port: int, connections: int, count: int) -> dict[str, Any]:
    """W5: successes, wall time, and runs started per second."""
    return trio.run(_main, port, connections, count)
