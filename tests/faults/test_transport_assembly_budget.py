"""Many clients each sending most of a big message and then nothing more, over real sockets.

Observed on main (by reading the transport, then with this test): every connection may hold
one message being assembled of up to ``max_message_bytes`` (8 MiB) for as long as it stays
up, and nothing bounded their sum — 1,024 connections could make the daemon hold 8 GiB.  Now
what all connections hold of the messages they are receiving is bounded daemon-wide
(``transport.assembly_bytes``): the connection whose next part does not fit is closed with
1013 (try again later), the others go on, and a connection that goes away (here a TCP reset)
gives its part back.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import attrs
import orjson
import trio
from ccx_testing import make_config, open_client, start_daemon, wait_until
from faults_net_testing import reset

from bench.rawws import RawWebSocket, open_raw_websocket
from cc_executor.executor.config.transport import TransportConfig

MESSAGE = 1024 * 1024  # max_message_bytes here
SENT = 900 * 1024  # of each big message, the part that is sent before the client stops


def big_frame_start(length: int) -> bytes:
    """The head of one final, masked (zero key) text frame of `length` bytes."""
    return bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big") + b"\0\0\0\0"


@contextlib.asynccontextmanager
async def stopped_halfway(port: int) -> AsyncIterator[RawWebSocket]:
    """A client that has sent SENT bytes of a MESSAGE-byte request and sends no more."""
    async with open_raw_websocket(port) as raw:
        await raw.read_frame()  # connected
        await raw.stream.send_all(big_frame_start(MESSAGE - 1) + b" " * SENT)
        yield raw


async def read_close(raw: RawWebSocket) -> int:
    while True:
        opcode, payload = await raw.read_frame()
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")


async def test_messages_being_received_are_bounded_across_connections(
    nursery: trio.Nursery,
) -> None:
    config = attrs.evolve(make_config(), max_message_bytes=MESSAGE)
    assert isinstance(config.transport, TransportConfig)
    transport = attrs.evolve(config.transport, assembly_bytes=2 * SENT + SENT // 2)
    served = await start_daemon(nursery, attrs.evolve(config, transport=transport))
    budget = served.daemon.assembly
    with trio.fail_after(60):
        async with stopped_halfway(served.port) as first, stopped_halfway(served.port):
            await wait_until(lambda: budget.held == 2 * SENT)
            async with stopped_halfway(served.port) as third:
                assert await read_close(third) == 1013
            assert budget.held == 2 * SENT  # the third gave back what it had
            # Small requests go through all the while, on old and new connections.
            async with open_client(served.url) as client:
                assert await client.call("list") == {"runs": []}
            reset(first.stream.socket)
            await wait_until(lambda: budget.held == SENT)
            # The room it held is there again: a whole big request is taken and answered.
            async with open_raw_websocket(served.port) as whole:
                await whole.read_frame()
                request = orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "list"})
                await whole.send_frame(0x1, request + b" " * (MESSAGE - 1 - len(request)))
                _, reply = await whole.read_frame()
                assert orjson.loads(reply) == {"jsonrpc": "2.0", "id": 7, "result": {"runs": []}}
            assert budget.held == SENT
    await wait_until(lambda: budget.held == 0)
