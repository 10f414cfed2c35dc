"""Close codes per RFC 6455, written and read as raw frames against a real daemon.

Observed on main: invalid UTF-8 in a text frame dropped the TCP connection (the client saw
1006); RFC 6455 8.1 says the connection is failed with 1007.  Later: a frame whose header
declared 1 TiB was refused only once ``max_message_bytes`` of it had arrived (a client that
sent the header and three bytes waited forever, its connection held), and a message sent
as many tiny fragments cost a Python object per fragment (an empty one too: a list slot
each, without bound) — about 30 times its bytes.
"""

from __future__ import annotations

import orjson
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


def frame_head(opcode: int, length: int, *, final: bool = True) -> bytes:
    """The header of a masked (zero key) client frame declaring `length` bytes."""
    first = (0x80 if final else 0) | opcode
    return bytes([first, 0x80 | 127]) + length.to_bytes(8, "big") + b"\0\0\0\0"


async def test_a_message_over_the_limit_closes_with_1009_as_soon_as_a_header_says_so() -> None:
    limit = 64 * 1024
    with trio.fail_after(60):
        async with run_daemon("--max-message-bytes", str(limit)) as daemon:
            # A frame that says it is 1 TiB long, and three bytes of it.
            async with open_raw_websocket(daemon.port) as raw:
                await raw.read_frame()
                await raw.stream.send_all(frame_head(0x1, 1 << 40) + b"[1,")
                assert await read_close(raw) == 1009
            # The header alone, one byte over, in two writes: nothing of its payload is needed.
            async with open_raw_websocket(daemon.port) as raw:
                await raw.read_frame()
                head = frame_head(0x1, limit + 1)
                await raw.stream.send_all(head[:5])
                await raw.stream.send_all(head[5:])
                assert await read_close(raw) == 1009
            # Fragments each under the limit: refused at the header that takes their sum over;
            # a ping right before it in the same write is still answered.
            async with open_raw_websocket(daemon.port) as raw:
                await raw.read_frame()
                first = client_frame(0x1, b" " * (limit - 10), final=False)
                ping = client_frame(0x9, b"still there?")
                await raw.stream.send_all(first + ping + frame_head(0x0, 11))
                assert await raw.read_frame() == (0xA, b"still there?")
                assert await read_close(raw) == 1009
            async with open_client(daemon.url) as client:
                assert (await client.call("list")) == {"runs": []}


async def test_a_message_in_tiny_fragments_costs_its_bytes_not_an_object_each() -> None:
    fragments = 400_000
    with trio.fail_after(120):
        async with (
            run_daemon("--max-message-bytes", str(4 * fragments)) as daemon,
            open_raw_websocket(daemon.port) as raw,
        ):
            await raw.read_frame()
            before = daemon.peak_rss_kib()
            # An empty batch, `[` and `]` around 400,000 fragments of two spaces and as many
            # empty ones: 1.6 MB on the wire for 800 KB of message.
            tiny = client_frame(0x0, b"  ", final=False) + client_frame(0x0, b"", final=False)
            await raw.stream.send_all(client_frame(0x1, b"[", final=False))
            for _ in range(fragments // 10_000):
                await raw.stream.send_all(tiny * 10_000)
            await raw.stream.send_all(client_frame(0x0, b"]"))
            _, payload = await raw.read_frame()
            assert orjson.loads(payload)["error"]["code"] == -32600  # the empty batch's
            # One object per fragment was ~60 bytes each: 24 MiB at the peak.
            assert daemon.peak_rss_kib() - before < 8 * 1024


async def test_a_reserved_opcode_closes_with_1002() -> None:
    with trio.fail_after(60):
        async with run_daemon() as daemon:
            async with open_raw_websocket(daemon.port) as raw:
                await raw.read_frame()
                await raw.send_frame(0x3, b"what is this")
                assert await read_close(raw) == 1002
            # A 64-bit length with its top bit set is malformed (RFC 6455 5.2), not too big.
            async with open_raw_websocket(daemon.port) as raw:
                await raw.read_frame()
                await raw.stream.send_all(frame_head(0x1, 1 << 63))
                assert await read_close(raw) == 1002


async def test_a_close_from_the_client_is_answered_with_its_code() -> None:
    with trio.fail_after(60):
        async with run_daemon() as daemon, open_raw_websocket(daemon.port) as raw:
            await raw.read_frame()
            await raw.send_frame(CLOSE, (4000).to_bytes(2, "big") + b"bye")
            assert await read_close(raw) == 4000
