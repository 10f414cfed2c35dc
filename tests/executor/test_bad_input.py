"""Each class of bad input gets the right answer and leaves everything else untouched.

This is the table in docs/protocol.md ("Bad input and what it gets"), row by row.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
from ccx_testing import Served, make_config, open_client, start_daemon
from trio_websocket import ConnectionClosed, open_websocket_url

from bench.rawws import open_raw_websocket

LIST = '{"jsonrpc":"2.0","id":1,"method":"list"}'
ROWS: list[tuple[str, str, int, Any]] = [
    # (row, frame, expected code, expected id)
    ("not JSON", '{"jsonrpc":', -32700, None),
    ("number", "42", -32600, None),
    ("string", '"x"', -32600, None),
    ("null", "null", -32600, None),
    ("empty batch", "[]", -32600, None),
    ("batch of 1001", "[" + ",".join([LIST] * 1001) + "]", -32600, None),
    ("jsonrpc missing", '{"id":77,"method":"list"}', -32600, 77),
    ("jsonrpc 1.0", '{"jsonrpc":"1.0","id":77,"method":"list"}', -32600, 77),
    ("float id", '{"jsonrpc":"2.0","id":1.5,"method":"list"}', -32600, None),
    ("bool id", '{"jsonrpc":"2.0","id":true,"method":"list"}', -32600, None),
    (
        "id past 64 bits",
        '{"jsonrpc":"2.0","id":1180591620717411303424,"method":"list"}',
        -32600,
        None,
    ),
    (
        "list after no cursor",
        '{"jsonrpc":"2.0","id":77,"method":"list","params":{"after":"x"}}',
        -32602,
        77,
    ),
    ("list limit 0", '{"jsonrpc":"2.0","id":77,"method":"list","params":{"limit":0}}', -32602, 77),
    ("object id", '{"jsonrpc":"2.0","id":{},"method":"list"}', -32600, None),
    ("null id", '{"jsonrpc":"2.0","id":null,"method":"list"}', -32600, None),
    ("method not a string", '{"jsonrpc":"2.0","id":77,"method":7}', -32600, 77),
    ("unknown method", '{"jsonrpc":"2.0","id":77,"method":"rm"}', -32601, 77),
    ("params array", '{"jsonrpc":"2.0","id":77,"method":"execute","params":["ls"]}', -32602, 77),
    (
        "string where array expected",
        '{"jsonrpc":"2.0","id":77,"method":"execute","params":{"argv":"rm -rf x"}}',
        -32602,
        77,
    ),
    (
        "string where number expected",
        '{"jsonrpc":"2.0","id":77,"method":"execute","params":{"argv":["true"],"timeout":"7"}}',
        -32602,
        77,
    ),
    (
        "extra key",
        '{"jsonrpc":"2.0","id":77,"method":"execute","params":{"argv":["true"],"x":1}}',
        -32602,
        77,
    ),
    (
        "NUL in argv",
        '{"jsonrpc":"2.0","id":77,"method":"execute","params":{"argv":["echo","a\\u0000b"]}}',
        -32602,
        77,
    ),
    (
        "unbalanced quote",
        '{"jsonrpc":"2.0","id":77,"method":"execute","params":{"command":"echo \'x"}}',
        -32602,
        77,
    ),
    (
        "control without a run",
        '{"jsonrpc":"2.0","id":77,"method":"control","params":{"type":"PAUSE"}}',
        -32002,
        77,
    ),
    (
        "control for an unknown run",
        '{"jsonrpc":"2.0","id":77,"method":"control","params":{"type":"PAUSE","run":"nope"}}',
        -32002,
        77,
    ),
    (
        "signal name not allowed",
        '{"jsonrpc":"2.0","id":77,"method":"signal","params":{"run":"r","signal":"SIGSEGV"}}',
        -32602,
        77,
    ),
]


@pytest.mark.parametrize(("row", "frame", "code", "msg_id"), ROWS, ids=[r[0] for r in ROWS])
async def test_bad_frame_gets_its_error(
    served: Served, row: str, frame: str, code: int, msg_id: Any
) -> None:
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            client.sent_ids.add(77)
            await client.send_raw(frame)
            reply = await client.receive()
            assert isinstance(reply, dict), reply
            assert reply["error"]["code"] == code, reply
            assert reply["id"] == msg_id
            assert reply["error"]["message"]
            # The connection is still fine afterwards.
            assert (await client.call("list")) == {"runs": []}


async def test_binary_frame_is_a_parse_error_and_the_session_goes_on(served: Served) -> None:
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            await client.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"list"}')
            reply = await client.receive()
            assert reply["error"]["code"] == -32700
            assert "text" in reply["error"]["message"]
            assert (await client.call("list")) == {"runs": []}


async def test_batches(served: Served) -> None:
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            client.sent_ids.update({1, 2, 3})
            batch = [
                {"jsonrpc": "2.0", "id": 1, "method": "list"},
                {"jsonrpc": "2.0", "method": "list"},  # a notification: no reply
                {"jsonrpc": "2.0", "id": 2, "method": "nope"},
                5,
                {"jsonrpc": "2.0", "id": 3, "method": "status", "params": {}},
            ]
            await client.send_raw(orjson.dumps(batch).decode())
            reply = await client.receive()
    assert isinstance(reply, list)
    assert [r["id"] for r in reply] == [1, 2, None, 3]
    assert reply[0]["result"] == {"runs": []}
    assert reply[1]["error"]["code"] == -32601
    assert reply[2]["error"]["code"] == -32600
    assert reply[3]["result"]["server"] == "cc-executor"


async def test_duplicate_id_in_flight_is_refused_without_disturbing_the_first(
    served: Served,
) -> None:
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            # This run ignores SIGTERM, so its CANCEL is in flight for the whole grace period;
            # a second request reusing that id meanwhile is refused.
            run = await client.execute(argv=["sh", "-c", "trap '' TERM; echo ready; sleep 30"])
            await client.wait_output(run, b"ready")
            client.sent_ids.add("dup")
            cancel = {
                "jsonrpc": "2.0",
                "id": "dup",
                "method": "control",
                "params": {"type": "CANCEL", "run": run},
            }
            await client.send_raw(orjson.dumps(cancel).decode())
            await client.send_raw(orjson.dumps(cancel).decode())
            while None not in client.responses:
                await client.receive()
            duplicate = client.responses[None][0]
            assert duplicate["error"]["code"] == -32600
            assert duplicate["error"]["data"]["duplicate_id"] == "dup"
            first = await client.response("dup")
            assert first["result"] == {"status": "canceled", "run": run, "rung": "sigkill"}


async def test_invalid_utf8_ends_the_connection_and_nothing_else(served: Served) -> None:
    with trio.fail_after(10):
        async with open_raw_websocket(served.port) as raw:
            opcode, greeting = await raw.read_frame()
            assert opcode == 0x1
            assert orjson.loads(greeting)["method"] == "connected"
            await raw.send_frame(0x1, b'{"x":"\xff\xfe"}')
            # wsproto fails the frame with 1007; trio-websocket then drops the TCP connection
            # without echoing a close frame (it only does so for peer-initiated closes).
            try:
                opcode, payload = await raw.read_frame()
            except EOFError:
                pass
            else:
                assert opcode == 0x8
                assert int.from_bytes(payload[:2], "big") == 1007
        # The daemon is untouched.
        async with open_client(served.url) as client:
            assert (await client.call("list")) == {"runs": []}


async def test_binary_frame_written_raw_gets_a_parse_error(served: Served) -> None:
    with trio.fail_after(10):
        async with open_raw_websocket(served.port, "/ws/mcp") as raw:
            await raw.read_frame()
            await raw.send_frame(0x2, b"\x00\x01binary")
            opcode, payload = await raw.read_frame()
            assert opcode == 0x1
            assert orjson.loads(payload)["error"]["code"] == -32700


async def test_frame_over_the_limit_closes_with_1009(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config(max_message_bytes=64 * 1024))
    with trio.fail_after(10):
        async with open_websocket_url(served.url) as ws:
            await ws.get_message()
            await ws.send_message("x" * (64 * 1024 + 1))
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1009


async def test_multi_megabyte_argument_is_refused_and_others_are_served(served: Served) -> None:
    huge = "echo " + "a" * 6_000_000
    with trio.fail_after(60):
        async with (
            open_client(served.url) as other,
            open_client(served.url, max_message_size=16 * 1024 * 1024) as client,
        ):
            run = await other.execute(argv=["sleep", "30"])
            async with trio.open_nursery() as nursery:
                answered: list[str] = []

                async def big() -> None:
                    response = await client.request("execute", {"command": huge})
                    answered.append("big")
                    assert response["error"]["code"] == -32006
                    assert "argument list too long" in response["error"]["message"]

                async def control() -> None:
                    await other.call("control", type="PAUSE", run=run)
                    await other.call("control", type="RESUME", run=run)
                    answered.append("control")

                nursery.start_soon(big)
                nursery.start_soon(control)
            assert sorted(answered) == ["big", "control"]
            await other.call("control", type="CANCEL", run=run)


async def test_burst_of_requests_each_answered_once_in_order(served: Served) -> None:
    count = 3000
    with trio.fail_after(60):
        async with open_client(served.url) as client, open_client(served.url) as other:
            run = await other.execute(argv=["sleep", "30"])
            client.sent_ids.update(range(count))
            frames = [
                orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "status"}).decode()
                for i in range(count)
            ]
            async with trio.open_nursery() as nursery:

                async def flood() -> None:
                    for frame in frames:
                        await client.send_raw(frame)

                nursery.start_soon(flood)
                # Another connection is served while the flood is going on.
                assert (await other.call("control", type="PAUSE", run=run))["status"] == "paused"
                await other.call("control", type="RESUME", run=run)
                order: list[int] = []
                while len(order) < count:
                    reply = await client.receive()
                    order.append(reply["id"])
            assert order == list(range(count))
            await other.call("control", type="CANCEL", run=run)
