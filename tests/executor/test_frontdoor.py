"""The front door: probes, refused upgrades (each a clear HTTP status), accepted sessions."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from cc_executor.executor.transport.frontdoor import (
    BadRequest,
    FrontDoor,
    Gate,
    Identity,
    Peer,
    parse_head,
)

TOKENS = {"s3cret-token": Identity("alice"), "other-token": Identity("bob", admin=True)}


def probe(path: str) -> tuple[int, bytes, str] | None:
    if path == "/healthz":
        return 200, b"ok\n", "text/plain"
    return None


@asynccontextmanager
async def serving(gate: Gate) -> AsyncIterator[tuple[int, list[str]]]:
    seen: list[str] = []
    refusals: list[str] = []

    async def echo(ws: WebSocketConnection, peer: Peer) -> None:
        identity = peer.identity
        assert peer.address.startswith("127.0.0.1:")
        seen.append(identity.name)
        with contextlib.suppress(ConnectionClosed):
            await ws.send_message(f"hello {identity.name} via {ws.subprotocol}")
            await ws.send_message(await ws.get_message())

    door = FrontDoor(
        gate=gate,
        probe=probe,
        on_upgrade=echo,
        head_timeout=5,
        close_timeout=5,
        max_message_bytes=1024,
        receive_buffer_bytes=4096,
        subprotocols=("mcp",),
        on_refusal=refusals.append,
    )
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, door.serve, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1], refusals
        nursery.cancel_scope.cancel()


async def http(port: int, raw: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(raw)
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
    return response


async def test_probes_and_plain_http() -> None:
    with trio.fail_after(10):
        async with serving(Gate(paths=("/",))) as (port, _):
            ok = await http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
            assert ok.endswith(b"\r\n\r\nok\n")
            head = await http(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert head.endswith(b"\r\n\r\n")
            missing = await http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            assert missing.startswith(b"HTTP/1.1 404")
            post = await http(port, b"POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert post.startswith(b"HTTP/1.1 405")
            garbage = await http(port, b"\x16\x03\x01 hello\r\n\r\n")
            assert garbage.startswith(b"HTTP/1.1 400")
            huge = await http(port, b"GET / HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n")
            assert huge.startswith(b"HTTP/1.1 400")


async def test_upgrade_without_authentication_on_loopback() -> None:
    with trio.fail_after(10):
        async with (
            serving(Gate(paths=("/", "/ws/mcp"))) as (port, _),
            open_websocket_url(f"ws://127.0.0.1:{port}/ws/mcp") as ws,
        ):
            assert await ws.get_message() == "hello local via None"
            await ws.send_message("ping")
            assert await ws.get_message() == "ping"


async def test_subprotocol_offered_is_chosen() -> None:
    with trio.fail_after(10):
        async with (
            serving(Gate(paths=("/",))) as (port, _),
            open_websocket_url(f"ws://127.0.0.1:{port}/", subprotocols=["mcp"]) as ws,
        ):
            assert ws.subprotocol == "mcp"
            assert await ws.get_message() == "hello local via mcp"


@pytest.mark.parametrize(
    ("url_suffix", "headers", "status", "rule"),
    [
        ("/", [], 401, "token"),
        ("/", [(b"Authorization", b"Bearer wrong")], 401, "token"),
        ("/?token=wrong", [], 401, "token"),
        ("/elsewhere", [(b"Authorization", b"Bearer s3cret-token")], 404, "path"),
        (
            "/",
            [(b"Authorization", b"Bearer s3cret-token"), (b"Origin", b"https://evil.example")],
            403,
            "origin",
        ),
    ],
)
async def test_refused_upgrades(
    url_suffix: str, headers: list[tuple[bytes, bytes]], status: int, rule: str
) -> None:
    gate = Gate(paths=("/",), tokens=TOKENS, allowed_origins=frozenset({"https://ok.example"}))
    with trio.fail_after(10):
        async with serving(gate) as (port, refusals):
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket_url(
                    f"ws://127.0.0.1:{port}{url_suffix}", extra_headers=headers
                ):
                    pass
            assert info.value.status_code == status
            assert refusals == [rule]


async def test_accepted_with_bearer_query_token_and_allowed_origin() -> None:
    gate = Gate(paths=("/",), tokens=TOKENS, allowed_origins=frozenset({"https://ok.example"}))
    with trio.fail_after(10):
        async with serving(gate) as (port, refusals):
            async with open_websocket_url(
                f"ws://127.0.0.1:{port}/",
                extra_headers=[(b"Authorization", b"Bearer s3cret-token")],
            ) as ws:
                assert await ws.get_message() == "hello alice via None"
            async with open_websocket_url(f"ws://127.0.0.1:{port}/?token=other-token") as ws:
                assert await ws.get_message() == "hello bob via None"
            async with open_websocket_url(
                f"ws://127.0.0.1:{port}/",
                extra_headers=[
                    (b"Authorization", b"Bearer s3cret-token"),
                    (b"Origin", b"https://ok.example"),
                ],
            ) as ws:
                assert await ws.get_message() == "hello alice via None"
            assert refusals == []


def test_parse_head() -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    head = parse_head(
        f"GET /ws/mcp?token=a&x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
        f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}".encode()
    )
    assert head.path == "/ws/mcp"
    assert head.query["token"] == ["a"]
    assert head.is_websocket
    with pytest.raises(BadRequest):
        parse_head(b"hello")
    with pytest.raises(BadRequest):
        parse_head(b"GET / HTTP/1.1\r\nno colon here")
