"""Leaving a connection is one close handshake: sent as soon as the caller is done, finished
as soon as the daemon answers it — never by waiting out `disconnect_timeout`."""

from __future__ import annotations

import sys

import orjson
import trio
from ccx_testing import Served
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from cc_executor.executor.client import ClientConfig, open_connection

TIMEOUT = 20
# A close bound longer than the test's: leaving within TIMEOUT proves the handshake ended the
# wait (were it the bound, the shielded wait would outlast fail_after and the test would fail).
BEYOND_THE_TEST = 3 * TIMEOUT
RUN = "f00d"


async def test_leaving_ends_with_the_daemons_close_not_the_bound(served: Served) -> None:
    config = ClientConfig(disconnect_timeout=BEYOND_THE_TEST)
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url, config=config) as conn:
            completed = await (await conn.execute(["true"])).wait()
            await conn.list()
    assert completed.exit_code == 0
    assert not served.daemon.sessions  # the daemon saw the close and ended the session


def frame(message: dict[str, object]) -> str:
    return orjson.dumps({"jsonrpc": "2.0", **message}).decode()


async def start_one_run_server(
    nursery: trio.Nursery, closes: trio.MemorySendChannel[tuple[int | None, list[str]]]
) -> int:
    """A daemon's side of one `execute` that completes at once; reports how the client left.

    Returns the port it listens on.
    """

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(frame({"method": "connected", "params": {"server": "fake"}}))
        request_id = orjson.loads(await ws.get_message())["id"]
        started = {"status": "started", "run": RUN, "pid": 1, "pgid": 1}
        await ws.send_message(frame({"id": request_id, "result": started}))
        completion = {"run": RUN, "seq": 1, "outcome": "exited", "status": "completed",
                      "exit_code": 0, "signal": None}  # fmt: skip
        await ws.send_message(frame({"method": "process.completed", "params": completion}))
        after: list[str] = []  # anything the client sends after the run is over
        try:
            while True:
                message = await ws.get_message()
                after.append(str(message))
        except ConnectionClosed as exc:
            await closes.send((exc.reason.code if exc.reason else None, after))

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    return int(server.port)


async def test_ccx_run_sends_its_close_once_the_run_is_over(nursery: trio.Nursery) -> None:
    send, receive = trio.open_memory_channel[tuple[int | None, list[str]]](1)
    with trio.fail_after(TIMEOUT):
        port = await start_one_run_server(nursery, send)
        done = await trio.run_process(
            [sys.executable, "-m", "cc_executor.executor", "run",
             "--url", f"ws://127.0.0.1:{port}/", "--", "true"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        code, after = await receive.receive()
    assert (done.returncode, done.stderr) == (0, b"")
    assert code == 1000  # a normal close, initiated by the client...
    assert after == []  # ...and nothing but that once the completion was in
