"""A WebSocket client written by hand over a trio TCP stream.

The W5 client opens a thousand of these at once (cheaper than a library's), and tests use it to
send frames no well-behaved library would (invalid UTF-8, binary).  Servers never mask, so
reading is header parsing; our frames are masked with a zero key, so the payload goes as is.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class HandshakeRefused(Exception):
    """The server answered the upgrade with something other than 101."""


class RawWebSocket:
    """Frames in and out, nothing more."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            data = await self.stream.receive_some(256 * 1024)
            if not data:
                raise EOFError("server closed the TCP connection")
            self.buffer.extend(data)

    async def read_response_head(self) -> bytes:
        """The server's HTTP response head (without its blank line); whatever came after it
        in the same reads stays in `buffer`, the first frames."""
        while b"\r\n\r\n" not in self.buffer:
            await self._fill(len(self.buffer) + 1)
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        return head

    async def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server."""
        await self._fill(2)
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        offset = 2
        if length == 126:
            await self._fill(4)
            length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
        elif length == 127:
            await self._fill(10)
            length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
        await self._fill(offset + length)
        payload = bytes(self.buffer[offset : offset + length])
        del self.buffer[: offset + length]
        return opcode, payload

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        """One final, masked frame."""
        await self.stream.send_all(client_frame(opcode, payload))


def client_frame(opcode: int, payload: bytes, *, final: bool = True) -> bytes:
    """The bytes of one masked client frame (zero key: the payload goes as is)."""
    header = bytes([(0x80 if final else 0) | opcode])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


@asynccontextmanager
async def open_raw_websocket(port: int, path: str = "/") -> AsyncIterator[RawWebSocket]:
    """Do the opening handshake by hand and yield the raw connection.

    Raises:
        HandshakeRefused: the server did not switch protocols.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        raw = RawWebSocket(stream)
        head = await raw.read_response_head()
        if not head.startswith(b"HTTP/1.1 101"):
            raise HandshakeRefused(head.decode("latin-1"))
        yield raw
