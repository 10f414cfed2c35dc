"""The opening handshake of our server WebSocket: an upgrade head in, wsproto's verdict out."""

from __future__ import annotations

import attrs
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import RemoteProtocolError


@attrs.frozen
class Handshake:
    """An upgrade wsproto accepted: the protocol (now open), the 101 to send, the request."""

    protocol: WSConnection
    response: bytes
    target: str
    subprotocol: str | None


@attrs.frozen
class HandshakeRefusal:
    """An upgrade wsproto refused (no key, wrong version, ...): the HTTP answer to give."""

    status: int
    message: str
    headers: dict[str, str]


def server_handshake(head: bytes, subprotocols: tuple[str, ...]) -> Handshake | HandshakeRefusal:
    """Check an upgrade request head (without the blank line) and accept it, choosing the
    first subprotocol the client offers that we speak."""
    protocol = WSConnection(ConnectionType.SERVER)
    try:
        protocol.receive_data(head + b"\r\n\r\n")
        requests = [event for event in protocol.events() if isinstance(event, Request)]
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in (hint.headers if isinstance(hint, RejectConnection) else [])
        }
        return HandshakeRefusal(status, str(exc), headers)
    if not requests:
        return HandshakeRefusal(400, "incomplete upgrade request", {})
    request = requests[0]
    chosen = next((p for p in request.subprotocols if p in subprotocols), None)
    response = protocol.send(AcceptConnection(subprotocol=chosen))
    return Handshake(protocol, response, request.target, chosen)
