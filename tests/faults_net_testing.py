"""Real network faults for the transport fault tests: TCP resets, raw handshakes, probes.

A reset is made the way a vanished peer makes it: ``SO_LINGER {1, 0}`` and ``close()``, so
the kernel sends an RST instead of a FIN and drops whatever was queued.  Everything here talks
to loopback only.
"""

from __future__ import annotations

import base64
import os
import socket
import struct

import trio
from transport_testing import http

from bench.rawws import RawWebSocket, client_frame


def upgrade_head(port: int, path: str = "/", extra: str = "") -> bytes:
    """A complete WebSocket upgrade request head (ending with the blank line)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


async def connect(port: int) -> trio.socket.SocketType:
    """A plain TCP connection to the daemon on loopback."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.connect(("127.0.0.1", port))
    return sock


def reset(sock: trio.socket.SocketType) -> None:
    """Close with an RST: ``SO_LINGER {1, 0}`` makes close() abort the connection."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def read_until(sock: trio.socket.SocketType, marker: bytes, limit: int = 65536) -> bytes:
    """Read until ``marker`` has arrived (or the peer closed, or ``limit`` bytes)."""
    data = b""
    while marker not in data and len(data) < limit:
        chunk = await sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


STAGES = ("connect", "mid-head", "head", "switched", "mid-frame", "probe")


async def reset_at(port: int, stage: str) -> None:
    """Open a connection, take it to `stage` of the handshake, and reset it there."""
    sock = await connect(port)
    try:
        head = upgrade_head(port)
        if stage == "mid-head":
            await sock.send(head[: len(head) // 2])
        elif stage == "head":
            await sock.send(head)
        elif stage in ("switched", "mid-frame"):
            await sock.send(head)
            answer = await read_until(sock, b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
            if stage == "mid-frame":
                frame = client_frame(0x1, b'{"jsonrpc":"2.0","id":1,"method":"list"}')
                await sock.send(frame[: len(frame) // 2])
        elif stage == "probe":
            await sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        reset(sock)


async def http_get(port: int, path: str) -> bytes:
    """The whole HTTP/1.1 response to ``GET path`` (the daemon closes after answering)."""
    return await http(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


async def read_until_pong(raw: RawWebSocket, payload: bytes) -> list[tuple[int, bytes]]:
    """Read frames until the pong for ``payload``; return every frame read before it."""
    before: list[tuple[int, bytes]] = []
    while True:
        opcode, data = await raw.read_frame()
        if opcode == 0xA and data == payload:
            return before
        before.append((opcode, data))


async def open_stalled(port: int, subprotocol: str | None) -> trio.SocketStream:
    """A WebSocket whose client never reads (its receive buffer small), past its handshake."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    offer = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    await stream.send_all(upgrade_head(port, extra=offer))
    head = await RawWebSocket(stream).read_response_head()
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream


class ResettingProxy:
    """A TCP relay on loopback between a client that cannot be reached from the test (ccx in
    a terminal) and the daemon: `reset()` aborts every connection it carries, with a real RST
    to each side, as a middlebox or a crashed host's peer would; new connections are carried
    as before."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._pairs: list[tuple[trio.socket.SocketType, trio.socket.SocketType]] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept and relay until cancelled (a task of the test's nursery)."""
        with trio.socket.socket() as listener:
            await listener.bind(("127.0.0.1", 0))
            listener.listen()
            self.port = listener.getsockname()[1]
            task_status.started()
            async with trio.open_nursery() as nursery:
                while True:
                    near, _ = await listener.accept()
                    far = await connect(self.upstream)
                    self._pairs.append((near, far))
                    nursery.start_soon(self._relay, near, far)
                    nursery.start_soon(self._relay, far, near)

    async def _relay(self, source: trio.socket.SocketType, sink: trio.socket.SocketType) -> None:
        try:
            while data := await source.recv(65536):
                view = memoryview(data)
                while view:
                    view = view[await sink.send(view) :]
            sink.shutdown(socket.SHUT_WR)
        except (OSError, trio.ClosedResourceError):
            return  # reset (by us, or by a peer)

    def reset(self) -> None:
        """Abort every connection carried so far, both halves, with an RST."""
        pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                if sock.fileno() != -1:
                    reset(sock)
