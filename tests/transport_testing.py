"""A connection boundary served in-process on loopback, with a test session kind."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed

from cc_executor.executor.daemon.metrics import Metrics
from cc_executor.executor.transport.connection import (
    ConnectionBoundary,
    ConnectionSession,
    SessionOpener,
)
from cc_executor.executor.transport.frontdoor import Gate, Peer
from cc_executor.executor.transport.listener import serve_listeners
from cc_executor.executor.transport.websocket import ServerWebSocket, WebSocketSettings
from cc_executor.protocol import JsonRpcError


def probe(path: str) -> tuple[int, bytes, str] | None:
    if path == "/healthz":
        return 200, b"ok\n", "text/plain"
    if path == "/metrics":
        return 200, b"ccx_connections 0\n", "text/plain"
    return None


class EchoSession:
    """A session kind that greets, echoes one message, and crashes on "crash"."""

    def __init__(self, ws: ServerWebSocket, peer: Peer, seen: list[str]) -> None:
        self.ws = ws
        self.peer = peer
        self.session_id = f"echo-{len(seen)}"
        seen.append(peer.identity.name)

    async def serve(self) -> None:
        assert self.peer.address.startswith("127.0.0.1:")
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send_message(f"hello {self.peer.identity.name} via {self.ws.subprotocol}")
            message = await self.ws.get_message()
            if message == "crash":
                raise RuntimeError("a bug in a session")
            await self.ws.send_message(message)
            await self.ws.get_message()  # until the client closes

    async def shut(self, reason: str) -> None:
        await self.ws.aclose(1001, reason)

    def opening(self) -> None:
        return None  # it sends its own first message

    def farewell(self, error: JsonRpcError) -> str:
        return f"farewell: {error.message}"


@attrs.frozen
class Door:
    port: int
    metrics: Metrics
    sessions: set[ConnectionSession]


@asynccontextmanager
async def serving(
    gate: Gate, max_connections: int = 8, session_kind: SessionOpener[Any] | None = None
) -> AsyncIterator[Door]:
    """Serve a boundary on 127.0.0.1, port 0, with `session_kind` (default: EchoSession)."""
    seen: list[str] = []
    metrics = Metrics()
    sessions: set[ConnectionSession] = set()
    boundary = ConnectionBoundary(
        gate=gate,
        probe=probe,
        open_session=session_kind or (lambda ws, peer: EchoSession(ws, peer, seen)),
        sessions=sessions,
        max_connections=max_connections,
        subprotocols=("mcp",),
        head_timeout=5,
        settings=WebSocketSettings(
            max_message_bytes=1024,
            receive_buffer_bytes=4096,
            inbound_queue_bytes=4096,
            close_timeout=5,
        ),
        metrics=metrics,
    )
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        await nursery.start(
            partial(serve_listeners, boundary.serve, listeners, retry_delay=0.1, metrics=metrics)
        )
        yield Door(listeners[0].socket.getsockname()[1], metrics, sessions)
        nursery.cancel_scope.cancel()


async def http(port: int, raw: bytes) -> bytes:
    """Send `raw` (a request, or garbage) on a fresh connection; return all the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(raw)
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
    return response
