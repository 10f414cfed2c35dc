"""A connection answers pings whatever its session is doing, against a real daemon process.

Observed on main: a client that sent 3,000 durable ``execute`` requests in one burst got no
pong for 20 s, and its WebSocket library dropped the connection — trio-websocket stops reading,
and so answering pings, while its one-message queue is full.  The assertions are orderings, not
timings: the pong overtakes work the daemon has not finished.
"""

from __future__ import annotations

import orjson
import trio
from ccx_testing import run_daemon
from faults_net_testing import read_until_pong

from bench.rawws import client_frame, open_raw_websocket

PING = 0x9
TEXT = 0x1
BURST = 200


def request(request_id: int, method: str, params: object) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def replies(frames: list[tuple[int, bytes]]) -> list[object]:
    """The JSON-RPC replies (results and errors, single or batched) among text frames."""
    found: list[object] = []
    for opcode, payload in frames:
        if opcode != TEXT:
            continue
        message = orjson.loads(payload)
        for item in message if isinstance(message, list) else [message]:
            if "id" in item:
                found.append(item["id"])
    return found


async def test_a_ping_behind_a_burst_of_requests_is_answered_before_the_burst() -> None:
    limits = ("--max-runs", str(BURST * 2), "--max-runs-per-connection", str(BURST * 2))
    with trio.fail_after(120):
        async with run_daemon(*limits) as daemon, open_raw_websocket(daemon.port) as raw:
            await raw.read_frame()  # connected
            burst = b"".join(
                client_frame(TEXT, request(i, "execute", {"argv": ["true"], "durable": True}))
                for i in range(1, BURST + 1)
            )
            await raw.stream.send_all(burst + client_frame(PING, b"burst"))
            before = await read_until_pong(raw, b"burst")
            # Each execute spawns a process; reading a request takes microseconds.  On main
            # the pong came only after the session had taken all but one of them.
            assert len(replies(before)) < BURST // 2


async def test_a_ping_is_answered_while_a_handler_waits_out_a_cancel_ladder() -> None:
    with trio.fail_after(60):
        async with (
            run_daemon("--term-grace", "3") as daemon,
            open_raw_websocket(daemon.port) as raw,
        ):
            await raw.read_frame()
            stubborn = {"argv": ["sh", "-c", "trap '' TERM; echo ready; sleep 30"]}
            await raw.send_frame(TEXT, request(1, "execute", stubborn))
            run = None
            while run is None:
                _opcode, payload = await raw.read_frame()
                message = orjson.loads(payload)
                if message.get("method") == "process.output":
                    run = message["params"]["run"]
            # A batch whose CANCEL waits out the SIGTERM grace, two requests behind it (they
            # filled trio-websocket's queue), then a ping.
            cancel = {"jsonrpc": "2.0", "id": 2, "method": "control", "params": {"type": "CANCEL"}}
            await raw.send_frame(TEXT, orjson.dumps([cancel]))
            await raw.send_frame(TEXT, request(3, "list", {}))
            await raw.send_frame(TEXT, request(4, "list", {}))
            await raw.send_frame(PING, b"patience")
            before = await read_until_pong(raw, b"patience")
            assert 2 not in replies(before)


async def test_a_ping_is_answered_during_a_flood_of_output() -> None:
    with trio.fail_after(120):
        async with run_daemon() as daemon, open_raw_websocket(daemon.port) as raw:
            await raw.read_frame()
            flood = {"argv": ["head", "-c", str(32 * 1024 * 1024), "/dev/zero"]}
            await raw.send_frame(TEXT, request(1, "execute", flood))
            await raw.send_frame(PING, b"flood")
            before = await read_until_pong(raw, b"flood")
            methods = [
                orjson.loads(payload).get("method") for opcode, payload in before if opcode == TEXT
            ]
            assert "process.completed" not in methods
