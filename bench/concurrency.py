"""W5 client side: many simultaneous connections, each running `seq 1 N` to completion.

One trio task per connection over a hand-made WebSocket (the same framing as wsclient.py,
asynchronously): connect, handshake, execute, read to `process.completed`, check the output.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import orjson
import trio

CONNECTION_BOUND = 60.0


class _Conn:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            data = await self.stream.receive_some(256 * 1024)
            if not data:
                raise EOFError("server closed the connection")
            self.buffer += data

    async def message(self) -> Any:
        await self._fill(2)
        length, offset = self.buffer[1] & 0x7F, 2
        if length == 126:
            await self._fill(4)
            length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
        elif length == 127:
            await self._fill(10)
            length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
        await self._fill(offset + length)
        if self.buffer[0] & 0x0F == 0x8:
            raise EOFError("close frame")
        payload = orjson.loads(memoryview(self.buffer)[offset : offset + length])
        del self.buffer[: offset + length]
        return payload

    async def send(self, message: dict[str, Any]) -> None:
        payload = orjson.dumps(message)
        n = len(payload)
        header = (
            bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
            if n >= 126
            else bytes([0x81, 0x80 | n])
        )
        await self.stream.send_all(header + b"\0\0\0\0" + payload)


async def _one(port: int, count: int, expected: str, marks: dict[str, list[float]]) -> bool:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        conn = _Conn(stream)
        while b"\r\n\r\n" not in conn.buffer:
            await conn._fill(len(conn.buffer) + 1)
        head, _, rest = bytes(conn.buffer).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            return False
        conn.buffer = bytearray(rest)
        greeting = await conn.message()
        if greeting.get("method") != "connected":
            return False
        marks["sent"].append(time.perf_counter())
        await conn.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "execute",
                "params": {"argv": ["seq", "1", str(count)]},
            }
        )
        pieces = []
        while True:
            message = await conn.message()
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
