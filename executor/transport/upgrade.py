"""The opening handshake of our server WebSocket (RFC 6455 4.2): an upgrade head in, the 101
and an open wsproto connection out, or the HTTP refusal to give.

The head is the one the front door has already read and parsed (``RequestHead``), so it is
checked here as it is, not parsed a second time: wsproto's own handshake (``WSConnection``)
would run the head through h11 again and build the 101 with it, about a tenth of what a short
connection cost the daemon.  The checks are the ones wsproto's server handshake makes, in its
order, with its messages and statuses (426 with ``Sec-WebSocket-Version: 13`` for a version we
do not speak); what follows the 101 is wsproto's connection itself (``wsproto.connection``),
which frames, parses and tracks the close as before.  We negotiate no extension.
"""

from __future__ import annotations

import base64
import hashlib

import attrs
from wsproto import ConnectionType
from wsproto.connection import Connection

from cc_executor.executor.transport.frontdoor import RequestHead

VERSION = "13"
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3


@attrs.frozen
class Handshake:
    """An accepted upgrade: the protocol (open), the 101 to send, the request target."""

    protocol: Connection
    response: bytes
    target: str
    subprotocol: str | None


@attrs.frozen
class HandshakeRefusal:
    """An upgrade refused (no key, wrong version, ...): the HTTP answer to give."""

    status: int
    message: str
    headers: dict[str, str]


def accept_token(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1(key.encode("latin-1") + ACCEPT_GUID).digest()  # SHA-1: the RFC's
    return base64.b64encode(digest).decode("ascii")


def _tokens(value: str) -> list[str]:
    return [token.strip() for token in value.split(",") if token.strip()]


def _check(head: RequestHead) -> HandshakeRefusal | None:
    headers = head.headers
    if head.method != "GET":
        return HandshakeRefusal(400, "Request method must be GET", {})
    if not head.target.isascii():
        return HandshakeRefusal(400, "the request target is not ASCII", {})
    if not any(token.lower() == "upgrade" for token in _tokens(headers.get("connection", ""))):
        return HandshakeRefusal(400, "Missing header, 'Connection: Upgrade'", {})
    version = headers.get("sec-websocket-version")
    if version != VERSION:
        return HandshakeRefusal(
            426 if version else 400,
            "Missing header, 'Sec-WebSocket-Version'",
            {"Sec-WebSocket-Version": VERSION},
        )
    if "sec-websocket-key" not in headers:
        return HandshakeRefusal(400, "Missing header, 'Sec-WebSocket-Key'", {})
    if headers.get("upgrade", "").lower() != "websocket":
        return HandshakeRefusal(400, "Missing header, 'Upgrade: websocket'", {})
    if "host" not in headers:
        return HandshakeRefusal(400, "Missing header, 'Host'", {})
    return None


def server_handshake(
    head: RequestHead, subprotocols: tuple[str, ...]
) -> Handshake | HandshakeRefusal:
    """Check an upgrade request and accept it, choosing the first subprotocol the client
    offers that we speak."""
    refusal = _check(head)
    if refusal is not None:
        return refusal
    offered = _tokens(head.headers.get("sec-websocket-protocol", ""))
    chosen = next((name for name in offered if name in subprotocols), None)
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_token(head.headers['sec-websocket-key'])}",
    ]
    if chosen is not None:
        lines.append(f"Sec-WebSocket-Protocol: {chosen}")
    response = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Handshake(Connection(ConnectionType.SERVER), response, head.target, chosen)
