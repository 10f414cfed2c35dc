"""The front door and the connection boundary: probes, refused upgrades (each a clear HTTP
status), accepted sessions, the one connection count, and a session that crashes (1011)."""

from __future__ import annotations

import base64
import os
from functools import partial

import orjson
import pytest
import structlog
import trio
from ccx_testing import make_config, open_client, start_daemon
from faults_net_testing import connect, upgrade_head
from transport_testing import http, serving
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    open_websocket_url,
)

from bench.rawws import RawWebSocket, client_frame
from cc_executor.executor.daemon.metrics import Metrics
from cc_executor.executor.transport.frontdoor import (
    BadRequest,
    Gate,
    Identity,
    parse_head,
)
from cc_executor.executor.transport.listener import serve_listeners

TOKENS = {"s3cret-token": Identity("alice"), "other-token": Identity("bob", admin=True)}


async def test_probes_and_plain_http() -> None:
    with trio.fail_after(10):
        async with serving(Gate(paths=("/",))) as door:
            port = door.port
            ok = await http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
            assert ok.endswith(b"\r\n\r\nok\n")
            head = await http(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert head.endswith(b"\r\n\r\n")  # no body, and the length a GET's would have
            assert b"\r\nContent-Length: 3\r\n" in head
            missing = await http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            assert missing.startswith(b"HTTP/1.1 404")
            post = await http(port, b"POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert post.startswith(b"HTTP/1.1 405")
            garbage = await http(port, b"\x16\x03\x01 hello\r\n\r\n")
            assert garbage.startswith(b"HTTP/1.1 400")
            for target in (b"//[", b"http://[::1", b"//[zz]/", b"//a]b/"):  # urlsplit refuses
                upgrade = b"\r\nUpgrade: websocket\r\nConnection: Upgrade"
                for extra in (b"", upgrade):
                    bad = await http(
                        port, b"GET " + target + b" HTTP/1.1\r\nHost: x" + extra + b"\r\n\r\n"
                    )
                    assert bad.startswith(b"HTTP/1.1 400"), (target, extra, bad)
            assert not door.metrics.internal_errors  # a bad request, not a daemon bug
            huge = await http(port, b"GET / HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n")
            assert huge.startswith(b"HTTP/1.1 400")


async def test_upgrade_without_authentication_on_loopback() -> None:
    with trio.fail_after(10):
        async with (
            serving(Gate(paths=("/", "/ws/mcp"))) as door,
            open_websocket_url(f"ws://127.0.0.1:{door.port}/ws/mcp") as ws,
        ):
            assert await ws.get_message() == "hello local via None"
            await ws.send_message("ping")
            assert await ws.get_message() == "ping"


async def test_subprotocol_offered_is_chosen() -> None:
    with trio.fail_after(10):
        async with (
            serving(Gate(paths=("/",))) as door,
            open_websocket_url(f"ws://127.0.0.1:{door.port}/", subprotocols=["mcp"]) as ws,
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
        async with serving(gate) as door:
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket_url(
                    f"ws://127.0.0.1:{door.port}{url_suffix}", extra_headers=headers
                ):
                    pass
            assert info.value.status_code == status
            assert dict(door.metrics.refusals) == {rule: 1}


async def test_accepted_with_bearer_query_token_and_allowed_origin() -> None:
    gate = Gate(paths=("/",), tokens=TOKENS, allowed_origins=frozenset({"https://ok.example"}))
    with trio.fail_after(10):
        async with serving(gate) as door:
            port = door.port
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
            assert not door.metrics.refusals


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


async def test_metrics_need_a_token_when_tokens_are_configured() -> None:
    with trio.fail_after(10):
        async with serving(Gate(paths=("/",), tokens=TOKENS)) as door:
            bare = await http(door.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert bare.startswith(b"HTTP/1.1 401")
            assert b"WWW-Authenticate: Bearer\r\n" in bare
            wrong = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n"
            assert (await http(door.port, wrong)).startswith(b"HTTP/1.1 401")
            good = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer other-token\r\n\r\n"
            assert (await http(door.port, good)).endswith(b"\r\n\r\nccx_connections 0\n")
            # Liveness stays open for probes that hold no token.
            health = await http(door.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert health.startswith(b"HTTP/1.1 200")
    async with serving(Gate(paths=("/",))) as door:  # no tokens: no authentication
        with trio.fail_after(10):
            open_metrics = await http(door.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert open_metrics.startswith(b"HTTP/1.1 200")


async def test_one_count_for_every_kind_of_session() -> None:
    with trio.fail_after(10):
        async with (
            serving(Gate(paths=("/",)), max_connections=2) as door,
            open_websocket_url(f"ws://127.0.0.1:{door.port}/", subprotocols=["mcp"]) as mcp,
            open_websocket_url(f"ws://127.0.0.1:{door.port}/") as plain,
        ):
            assert await mcp.get_message() == "hello local via mcp"
            assert await plain.get_message() == "hello local via None"
            assert len(door.sessions) == 2
            for offered in (["mcp"], []):
                async with open_websocket_url(
                    f"ws://127.0.0.1:{door.port}/", subprotocols=offered
                ) as third:
                    farewell = await third.get_message()
                    assert farewell == "farewell: connection limit reached (max_connections=2)"
                    with pytest.raises(ConnectionClosed) as info:
                        await third.get_message()
                    assert info.value.reason is not None
                    assert info.value.reason.code == 1013
            assert door.metrics.refusals["max_connections"] == 2


async def test_a_session_that_crashes_is_closed_with_1011_and_nothing_else() -> None:
    with trio.fail_after(10):
        async with serving(Gate(paths=("/",))) as door:
            url = f"ws://127.0.0.1:{door.port}/"
            async with open_websocket_url(url) as ws:
                await ws.get_message()
                await ws.send_message("crash")
                assert await ws.get_message() == "farewell: internal error; the session is closed"
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason is not None
                assert info.value.reason.code == 1011
            assert door.metrics.internal_errors == {"connection": 1}
            assert not door.sessions
            async with open_websocket_url(url) as ws:  # the listener goes on
                assert await ws.get_message() == "hello local via None"


async def test_an_upgrade_wsproto_refuses_gets_its_status() -> None:
    with trio.fail_after(10):
        async with serving(Gate(paths=("/",))) as door:
            old = await http(
                door.port,
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            )
            assert old.startswith(b"HTTP/1.1 426")
            assert b"Sec-WebSocket-Version: 13\r\n" in old


async def test_the_daemon_counts_mcp_and_json_rpc_sessions_as_one(nursery: trio.Nursery) -> None:
    """On main the two kinds were counted apart: two MCP sessions did not stop a JSON-RPC
    one at max_connections=2, and the drain logged one connection for two."""
    served = await start_daemon(nursery, make_config(max_connections=2))
    with trio.fail_after(20):
        async with (
            open_websocket_url(served.url, subprotocols=["mcp"]),
            open_client(served.url) as plain,
        ):
            async with open_websocket_url(served.url, subprotocols=["mcp"]) as third:
                with pytest.raises(ConnectionClosed) as info:
                    await third.get_message()
                assert info.value.reason is not None
                assert info.value.reason.code == 1013
            async with open_websocket_url(served.url) as fourth:
                error = orjson.loads(await fourth.get_message())
                assert error["error"]["data"]["limit"] == "max_connections"
            assert (await plain.call("status"))["connections"] == 2
            with structlog.testing.capture_logs() as logs:
                await served.daemon.shutdown()
    draining = [entry for entry in logs if entry["event"] == "daemon.draining"]
    assert draining[0]["connections"] == 2


async def test_a_handler_that_raises_anyway_does_not_end_the_listener() -> None:
    metrics = Metrics()
    handled: list[int] = []

    async def broken(stream: trio.SocketStream) -> None:
        handled.append(1)
        raise RuntimeError("a bug in the boundary's own cleanup")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await nursery.start(
                partial(serve_listeners, broken, listeners, retry_delay=0.1, metrics=metrics)
            )
            for _ in range(2):
                assert await http(port, b"GET /healthz HTTP/1.1\r\n\r\n") == b""
            nursery.cancel_scope.cancel()
    assert handled == [1, 1]
    assert metrics.internal_errors == {"listener": 2}


async def test_the_greeting_arrives_with_the_101_and_mcp_gets_the_101_alone(
    nursery: trio.Nursery,
) -> None:
    """A JSON-RPC client's first read after its upgrade holds the 101 and the ``connected``
    greeting (one write, one wake-up); an MCP client, which speaks first, gets the 101 only,
    and the first frame it reads after it is the answer to its own ping."""
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(20):
        for extra, greeted in (("", True), ("Sec-WebSocket-Protocol: mcp\r\n", False)):
            sock = await connect(served.port)
            with sock:
                await sock.send(upgrade_head(served.port, "/", extra))
                raw = RawWebSocket(trio.SocketStream(sock))
                head = await raw.read_response_head()  # it stops at the read ending the head
                assert head.startswith(b"HTTP/1.1 101 ")
                if greeted:
                    # A final text frame, come in the same read as the 101.
                    assert raw.buffer[0] == 0x81
                    assert b'"method":"connected"' in raw.buffer
                    continue
                assert raw.buffer == b""
                await sock.send(client_frame(0x9, b"first"))
                assert await raw.read_frame() == (0xA, b"first")


async def test_a_client_past_the_limit_is_refused_without_a_greeting(nursery: trio.Nursery) -> None:
    """Clients whose upgrades arrive together, past max_connections: the first two are
    greeted, the others get the 101 and then only the refusal (-32003, close 1013) — never a
    ``connected`` first, even while the admitted ones' 101s are still being written."""
    served = await start_daemon(nursery, make_config(max_connections=2))
    with trio.fail_after(20):
        socks = [await connect(served.port) for _ in range(4)]
        for sock in socks:  # every head out before the daemon answers any
            await sock.send(upgrade_head(served.port))
        firsts = []
        for sock in socks:
            raw = RawWebSocket(trio.SocketStream(sock))
            assert (await raw.read_response_head()).startswith(b"HTTP/1.1 101 ")
            opcode, payload = await raw.read_frame()
            assert opcode == 0x1
            first = orjson.loads(payload)
            firsts.append(first)
            if "error" in first:
                assert first["error"]["data"]["limit"] == "max_connections"
                assert await raw.read_frame() == (
                    0x8,
                    (1013).to_bytes(2, "big") + b"connection limit reached",
                )
        assert [first.get("method") for first in firsts].count("connected") == 2
        assert ["error" in first for first in firsts].count(True) == 2
        for sock in socks:
            sock.close()
