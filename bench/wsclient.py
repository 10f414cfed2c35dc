"""A minimal blocking WebSocket client on a raw socket, fast enough not to be the bottleneck.

Server frames are unmasked, so reading is header parsing plus a memoryview into one large
receive buffer; payloads reach orjson without a copy.  Client frames are masked with a zero key
(valid WebSocket, and the payload then goes as is).  No fragmentation: the daemon sends every
message as one final frame.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

RECV_BUFFER = 4 * 1024 * 1024


class Closed(Exception):
    """The server closed the connection."""


class WsClient:
    """One WebSocket connection, read and written with plain blocking calls."""

    def __init__(
        self, port: int, path: str = "/", rcvbuf: int | None = None, subprotocol: str | None = None
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect(("127.0.0.1", port))
        self._buf = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._next_id = 0
        # W3 reads slowly: at most recv_cap bytes per receive, then pace(n) may sleep.
        self.recv_cap: int | None = None
        self.pace: Callable[[int], None] | None = None
        key = base64.b64encode(os.urandom(16)).decode()
        offer = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n{offer}"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while True:
            head_end = self._buf.find(b"\r\n\r\n", 0, self._end)
            if head_end >= 0:
                break
            self._fill(self._end + 1)
        head = bytes(self._buf[:head_end])
        if not head.startswith(b"HTTP/1.1 101"):
            raise Closed(head.decode(errors="replace"))
        # Binary output frames only when the server selected the subprotocol we offered.
        self.binary = subprotocol is not None and (
            f"sec-websocket-protocol: {subprotocol}".encode() in head.lower()
        )
        self._start = head_end + 4

    def close(self) -> None:
        self.sock.close()

    # -- reading ------------------------------------------------------------------------

    def _fill(self, need: int) -> None:
        """Receive until `need` bytes from _start are buffered (compacting/growing as needed)."""
        if self._start + need > len(self._buf):
            held = self._end - self._start
            if need > len(self._buf):
                grown = bytearray(max(need, 2 * len(self._buf)))
                grown[:held] = self._view[self._start : self._end]
                self._buf, self._view = grown, memoryview(grown)
            else:
                self._view[:held] = self._view[self._start : self._end]
            self._start, self._end = 0, held
        while self._end - self._start < need:
            n = self.sock.recv_into(self._view[self._end :], self.recv_cap or 0)
            if n == 0:
                raise Closed("EOF")
            self._end += n
            if self.pace is not None:
                self.pace(n)

    def buffered_frame(self) -> bool:
        """True when a whole frame is already in the buffer (no receive needed)."""
        held = self._end - self._start
        if held < 2:
            return False
        length = self._buf[self._start + 1] & 0x7F
        offset = 2 if length < 126 else 4 if length == 126 else 10
        if held < offset:
            return False
        if length == 126:
            length = int.from_bytes(self._buf[self._start + 2 : self._start + 4], "big")
        elif length == 127:
            length = int.from_bytes(self._buf[self._start + 2 : self._start + 10], "big")
        return held >= offset + length

    def readable(self, timeout: float) -> bool:
        """A frame is buffered, or the socket has data within `timeout` seconds."""
        if self.buffered_frame():
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])

    def read_frame(self) -> tuple[int, memoryview]:
        """(opcode, payload view) of the next frame; the view is valid until the next read."""
        self._fill(2)
        b0, b1 = self._buf[self._start], self._buf[self._start + 1]
        length = b1 & 0x7F
        offset = 2
        if length == 126:
            self._fill(4)
            length = int.from_bytes(self._buf[self._start + 2 : self._start + 4], "big")
            offset = 4
        elif length == 127:
            self._fill(10)
            length = int.from_bytes(self._buf[self._start + 2 : self._start + 10], "big")
            offset = 10
        self._fill(offset + length)
        begin = self._start + offset
        self._start = begin + length
        opcode = b0 & 0x0F
        if opcode == OP_CLOSE:
            raise Closed(bytes(self._view[begin : self._start]).hex())
        return opcode, self._view[begin : self._start]

    def read_message(self) -> Any:
        """The next text message, decoded (pings answered, other control frames skipped)."""
        while True:
            message = self.read_any()
            if not isinstance(message, memoryview):
                return message

    def read_any(self) -> Any:
        """The next message: a text one decoded, a binary one as a view of its payload (valid
        until the next read); pings answered."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == OP_TEXT:
                return orjson.loads(payload)
            if opcode == OP_BINARY:
                return payload
            if opcode == OP_PING:
                self.send_frame(OP_PONG, bytes(payload))

    # -- writing ------------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        self.sock.sendall(header + b"\0\0\0\0" + payload)

    def request(self, method: str, params: dict[str, Any]) -> int:
        """Send a JSON-RPC request; returns its id."""
        self._next_id += 1
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        self.send_frame(OP_TEXT, orjson.dumps(message))
        return self._next_id

    def call(self, method: str, params: dict[str, Any], bound: float = 30.0) -> Any:
        """Send a request and read messages until its reply (other messages are dropped)."""
        msg_id = self.request(method, params)
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            message = self.read_message()
            if message.get("id") == msg_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
        raise TimeoutError(f"no reply to {method} in {bound} s")


def connect(
    port: int,
    rcvbuf: int | None = None,
    bound: float = 10.0,
    path: str = "/",
    subprotocol: str | None = None,
) -> WsClient:
    """Open a connection (offering `subprotocol`) and consume the `connected` greeting."""
    client = WsClient(port, path, rcvbuf=rcvbuf, subprotocol=subprotocol)
    client.sock.settimeout(bound)
    greeting = client.read_message()
    if greeting.get("method") != "connected":
        raise Closed(f"unexpected greeting {greeting!r}")
    return client
