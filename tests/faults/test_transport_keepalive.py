"""Keepalive (``--ping-interval``/``--ping-timeout``): a client that answers no ping is dropped.

The original CC-Executor ran uvicorn with WS_PING_INTERVAL 20 s and WS_PING_TIMEOUT 30 s: a
client that hung, or vanished without a FIN or RST, was dropped and its process ended.  Seen
without keepalive: a client SIGSTOPped after pausing its run kept the run's tree stopped for as
long as it stayed stopped (92 s and counting).  The client here is a raw WebSocket that reads
nothing and answers nothing once its run is paused: what a hung client looks like on the wire.
"""

from __future__ import annotations

from typing import Any

import orjson
import trio
from ccx_testing import make_config, proc_stat, start_daemon, wait_until
from faults_net_testing import http_get

from bench.rawws import RawWebSocket, open_raw_websocket
from cc_executor.executor.config.transport import TransportConfig

TEXT, PING, PONG = 0x1, 0x9, 0xA
KEEPALIVE = TransportConfig(ping_interval=0.2, ping_timeout=0.5)


def request(request_id: int, method: str, params: object) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


async def next_text(raw: RawWebSocket) -> Any:
    """The next text frame, answering the pings that come before it."""
    while True:
        opcode, payload = await raw.read_frame()
        if opcode == PING:
            await raw.send_frame(PONG, payload)
        elif opcode == TEXT:
            return orjson.loads(payload)


def state(pid: int) -> str:
    stat = proc_stat(pid)
    return "gone" if stat is None else stat[0]


async def paused_run(raw: RawWebSocket) -> int:
    """Start a run and pause it; its pid."""
    assert (await next_text(raw))["method"] == "connected"
    await raw.send_frame(TEXT, request(1, "execute", {"argv": ["sleep", "60"]}))
    pid: int = (await next_text(raw))["result"]["pid"]
    await raw.send_frame(TEXT, request(2, "control", {"type": "PAUSE"}))
    while (await next_text(raw)).get("method") != "process.paused":
        pass
    return pid


async def test_a_client_that_answers_no_ping_is_dropped_and_its_paused_run_ended(
    nursery: trio.Nursery,
) -> None:
    served = await start_daemon(nursery, make_config(transport=KEEPALIVE))
    with trio.fail_after(30):
        async with open_raw_websocket(served.port, "/ws/mcp") as raw:
            pid = await paused_run(raw)
            assert state(pid) == "T"
            # The client hangs: it reads and answers nothing from here on.
            await wait_until(lambda: proc_stat(pid) is None, bound=20)
            # The session closes once its run has ended: a moment after the run's process.
            health = await http_get(served.port, "/health")
            while b'"active_sessions":0' not in health:
                await trio.sleep(0.05)
                health = await http_get(served.port, "/health")


async def test_a_client_that_answers_pings_is_kept(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config(transport=KEEPALIVE))
    with trio.fail_after(30):
        async with open_raw_websocket(served.port, "/ws/mcp") as raw:
            pid = await paused_run(raw)
            pings = 0
            while pings < 8:  # each answered: several ping_timeouts go by
                opcode, payload = await raw.read_frame()
                assert opcode == PING, (opcode, payload)
                await raw.send_frame(PONG, payload)
                pings += 1
            assert state(pid) == "T"  # still there, still paused
            await raw.send_frame(TEXT, request(3, "control", {"type": "CANCEL"}))
            reply = await next_text(raw)
    assert reply["id"] == 3
    assert reply["result"]["status"] == "canceled"
