"""The opening handshake (transport/upgrade.py): RFC 6455's checks, statuses and accept token,
the subprotocol choice, and an open wsproto connection after it."""

from __future__ import annotations

import pytest
from wsproto.connection import ConnectionState
from wsproto.events import TextMessage

from cc_executor.executor.transport.frontdoor import parse_head
from cc_executor.executor.transport.upgrade import (
    Handshake,
    HandshakeRefusal,
    accept_token,
    server_handshake,
)

GOOD = {
    "Host": "127.0.0.1:1",
    "Upgrade": "websocket",
    "Connection": "keep-alive, Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def head(request_line: str = "GET /ws/mcp?x=1 HTTP/1.1", **headers: str | None) -> bytes:
    fields = {**GOOD, **{name.replace("_", "-"): value for name, value in headers.items()}}
    lines = [request_line] + [f"{name}: {value}" for name, value in fields.items() if value]
    return "\r\n".join(lines).encode("latin-1")


def test_the_accept_token_is_the_rfcs() -> None:
    # RFC 6455 1.3's own example.
    assert accept_token("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_an_upgrade_is_accepted_with_a_101_and_an_open_connection() -> None:
    handshake = server_handshake(parse_head(head()), ("mcp",))
    assert isinstance(handshake, Handshake)
    assert handshake.target == "/ws/mcp?x=1"
    assert handshake.subprotocol is None
    lines = handshake.response.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines
    assert b"Upgrade: websocket" in lines
    assert b"Connection: Upgrade" in lines
    assert handshake.response.endswith(b"\r\n\r\n")
    assert not any(line.startswith(b"Sec-WebSocket-Protocol") for line in lines)
    protocol = handshake.protocol
    assert protocol.state is ConnectionState.OPEN
    # A masked client text frame "hi" (RFC 6455 5.7's example masking key).
    protocol.receive_data(bytes([0x81, 0x82, 0x37, 0xFA, 0x21, 0x3D, 0x5F, 0x93]))
    (event,) = list(protocol.events())
    assert isinstance(event, TextMessage)
    assert event.data == "hi"


def test_the_first_offered_subprotocol_we_speak_is_chosen() -> None:
    raw = head(Sec_WebSocket_Protocol="chat, ccx.binary.v1 , mcp")
    handshake = server_handshake(parse_head(raw), ("mcp", "ccx.binary.v1"))
    assert isinstance(handshake, Handshake)
    assert handshake.subprotocol == "ccx.binary.v1"
    assert b"\r\nSec-WebSocket-Protocol: ccx.binary.v1\r\n" in handshake.response
    none = server_handshake(parse_head(head(Sec_WebSocket_Protocol="chat")), ("mcp",))
    assert isinstance(none, Handshake)
    assert none.subprotocol is None


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (head("POST / HTTP/1.1"), 400, "Request method must be GET"),
        (head(Connection="keep-alive, notupgrade"), 400, "Missing header, 'Connection: Upgrade'"),
        (head(Sec_WebSocket_Version=None), 400, "Missing header, 'Sec-WebSocket-Version'"),
        (head(Sec_WebSocket_Version="8"), 426, "Missing header, 'Sec-WebSocket-Version'"),
        (head(Sec_WebSocket_Key=None), 400, "Missing header, 'Sec-WebSocket-Key'"),
        (head(Upgrade="h2c"), 400, "Missing header, 'Upgrade: websocket'"),
        (head(Host=None), 400, "Missing header, 'Host'"),
        (head("GET /\xe9 HTTP/1.1"), 400, "the request target is not ASCII"),
    ],
)
def test_an_upgrade_that_breaks_a_rule_is_refused_with_its_status(
    raw: bytes, status: int, message: str
) -> None:
    refusal = server_handshake(parse_head(raw), ())
    assert isinstance(refusal, HandshakeRefusal)
    assert (refusal.status, refusal.message) == (status, message)
    if "Version" in message:  # the version we speak, for the client to retry with
        assert refusal.headers == {"Sec-WebSocket-Version": "13"}
    else:
        assert refusal.headers == {}
