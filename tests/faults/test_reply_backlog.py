"""A client that sends requests answered by tasks of their own and never reads: bounded.

Observed on main (an outside probe): a JSON-RPC batch and an MCP ``tools/call`` are each served
by a task, with no bound, and each task held its encoded reply while the socket was full —
1.8 MB of batches from a client that never read held 393 MiB, 2 MiB of ``tools/call`` 1.1 GiB.
Now the reader reads no further message while more than a bound of replies wait for the socket
(executor/transport/backlog.py): the client's writes wait instead, as for requests the reader
answers itself.  The client here is a real socket that never reads, with a small receive
buffer; what is asserted is what the daemon took and holds, not a time.
"""

from __future__ import annotations

import orjson
import trio
from ccx_testing import make_config, open_client, start_daemon, wait_until
from faults_net_testing import open_stalled

from bench.rawws import client_frame
from cc_executor.executor.transport.backlog import REPLY_BACKLOG_BYTES
from cc_executor.protocol.mcp import SUBPROTOCOL


async def served_meanwhile(url: str) -> None:
    """Another client's run goes through while the stalled one is held."""
    async with open_client(url) as other:
        run = await other.execute(argv=["echo", "hi"])
        assert (await other.wait_completed(run)).stdout == bytearray(b"hi\n")


async def flood(stream: trio.SocketStream, frames: list[bytes]) -> None:
    """Send until the daemon stops taking them (the socket then stays full): never returns."""
    for frame in frames:
        await stream.send_all(frame)


async def held_while_unread(
    nursery: trio.Nursery, subprotocol: str | None, frames: list[bytes], requests: int
) -> None:
    """Flood `frames` (`requests` requests) from a client that never reads; check the daemon
    stops reading them while their replies wait, and serves everyone else meanwhile."""
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(60):
        stream = await open_stalled(served.port, subprotocol)
        async with trio.open_nursery() as client:
            client.start_soon(flood, stream, frames)
            await wait_until(lambda: len(served.daemon.sessions) == 1)
            (session,) = served.daemon.sessions
            await wait_until(lambda: session.backlog.waiting > REPLY_BACKLOG_BYTES, bound=30)
            await served_meanwhile(served.url)  # everyone else is served...
            taken = session.requests
            await served_meanwhile(served.url)
            # ...and while the replies wait, nothing more is read (the flood waits in TCP).
            assert session.requests == taken < requests
            client.cancel_scope.cancel()
        await trio.aclose_forcefully(stream)
        await wait_until(lambda: not served.daemon.sessions)


async def test_batches_from_a_client_that_never_reads_stop_being_read(
    nursery: trio.Nursery,
) -> None:
    batch = orjson.dumps([{"jsonrpc": "2.0", "id": i, "method": "status"} for i in range(100)])
    frames = [client_frame(0x1, batch)] * 4000  # 400,000 requests, their replies ~200 MB
    await held_while_unread(nursery, None, frames, 100 * len(frames))


async def test_tool_calls_from_a_client_that_never_reads_stop_being_read(
    nursery: trio.Nursery,
) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "stalled", "version": "0"},
        },
    }
    frames = [client_frame(0x1, orjson.dumps(initialize))]
    frames.append(client_frame(0x1, b'{"jsonrpc":"2.0","method":"notifications/initialized"}'))
    call = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "list", "arguments": {}}}
    frames += [client_frame(0x1, orjson.dumps({**call, "id": i + 1})) for i in range(50_000)]
    await held_while_unread(nursery, SUBPROTOCOL, frames, len(frames))
