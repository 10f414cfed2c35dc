"""Close codes per RFC 6455, written and read as raw frames against a real daemon.

Observed on main: invalid UTF-8 in a text frame dropped the TCP connection (the client saw
1006); RFC 6455 8.1 says the connection is failed with 1007.
"""

from __future__ import annotations

import trio
from ccx_testing import open_client, run_daemon

from bench.rawws import RawWebSocket, client_frame, open_raw_websocket

CLOSE = 0x8


async def read_close(raw: RawWebSocket) -> int:
    """Read frames until the close frame; return its code (then the server hangs up)."""
    while True:
        opcode, payload = await raw.read_frame()
        if opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big")
            assert await raw.stream.receive_some(1) == b""  # then a FIN, not a reset
            return code


async def test_invalid_utf8_closes_with_1007_and_nothing_else() -> None:
    with trio.fail_after(60):
        async with run_daemon() as daemon:
            async with open_raw_websocket(daemon.port) as raw:
                await raw.read_frame()  # connected
                await raw.send_frame(0x1, b'{"x":"\xff\xfe"}')
                assert await read_close(raw) == 1007
            # Split across fragments: a valid start, then bytes that are not UTF-8.
            async with open_raw_websocket(daemon.port) as raw:
                await raw.read_frame()
                await raw.stream.send_all(client_frame(0x1, b'{"x":"\xc3', final=False))
                await raw.send_frame(0x0, b'\x28"}')  # 0xC3 0x28 is not a UTF-8 sequence
                assert await read_close(raw) == 1007
            async with open_client(daemon.url) as client:
                assert (await client.call("list")) == {"runs": []}


async def test_a_message_over_the_limit_closes_with_1009_before_it_has_all_arrived() -> None:
    limit = 64 * 1024
    with trio.fail_after(60):
        async with (
            run_daemon("--max-message-bytes", str(limit)) as daemon,
            open_raw_websocket(daemon.port) as raw,
        ):
            await raw.read_frame()
            # A frame that says it is 1 TiB long; the daemon stops at the limit.
            header = bytes([0x81, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + b"\0\0\0\0"
            await raw.stream.send_all(header + b"x" * (limit + 1))
            assert await read_close(raw) == 1009


async def test_a_reserved_opcode_closes_with_1002() -> None:
    with trio.fail_after(60):
        async with run_daemon() as daemon, open_raw_websocket(daemon.port) as raw:
            await raw.read_frame()
            await raw.send_frame(0x3, b"what is this")
            assert await read_close(raw) == 1002


async def test_a_close_from_the_client_is_answered_with_its_code() -> None:
    with trio.fail_after(60):
        async with run_daemon() as daemon, open_raw_websocket(daemon.port) as raw:
            await raw.read_frame()
            await raw.send_frame(CLOSE, (4000).to_bytes(2, "big") + b"bye")
            assert await read_close(raw) == 4000
