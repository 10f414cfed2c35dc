"""A connection's socket reads and writes (transport/sockio.py) on real loopback TCP: the
bytes, the end of the stream, a reset, a close, a cancel and a full send buffer."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from cc_executor.executor.transport import sockio


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """(ours, theirs): both ends of one loopback TCP connection."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listeners[0].accept())

        nursery.start_soon(accept)
        theirs = await trio.open_tcp_stream("127.0.0.1", port)
    ours = accepted[0]
    try:
        yield ours, theirs
    finally:
        for stream in (ours, theirs, listeners[0]):
            await trio.aclose_forcefully(stream)


def reset(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER 0: the peer gets an RST, not a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def test_receive_some_gets_what_is_waiting_what_comes_later_and_the_end() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs):
            await theirs.send_all(b"already here")
            await trio.sleep(0.05)
            assert await sockio.receive_some(ours, 100) == b"already here"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(theirs.send_all, b"later")
                assert await sockio.receive_some(ours, 100) == b"later"
            await theirs.send_eof()
            assert await sockio.receive_some(ours, 100) == b""


async def test_a_reset_is_a_broken_resource_with_the_os_error_as_its_cause() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs):
            reset(theirs)
            with pytest.raises(trio.BrokenResourceError) as info:
                await sockio.receive_some(ours, 100)
            assert isinstance(info.value.__cause__, ConnectionResetError)
            with pytest.raises(trio.BrokenResourceError) as info:
                await sockio.send_all(ours, b"x" * 1000)  # the reset was read: EPIPE now
            assert isinstance(info.value.__cause__, BrokenPipeError)


async def test_a_closed_socket_is_a_closed_resource_also_when_closed_during_the_wait() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, _theirs):
            async with trio.open_nursery() as nursery:

                async def close_soon() -> None:
                    await trio.sleep(0.05)
                    ours.socket.close()

                nursery.start_soon(close_soon)
                with pytest.raises(trio.ClosedResourceError):
                    await sockio.receive_some(ours, 100)
            with pytest.raises(trio.ClosedResourceError):
                await sockio.receive_some(ours, 100)
            with pytest.raises(trio.ClosedResourceError):
                await sockio.send_all(ours, b"x")


async def test_a_receive_cancelled_while_it_waits_loses_nothing() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs):
            with trio.move_on_after(0.05) as scope:
                await sockio.receive_some(ours, 100)
            assert scope.cancelled_caught
            await theirs.send_all(b"kept")
            assert await sockio.receive_some(ours, 100) == b"kept"


async def test_a_cancelled_call_moves_no_byte() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ours, theirs):
            await theirs.send_all(b"unread")
            await trio.sleep(0.05)
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(trio.Cancelled):
                    await sockio.receive_some(ours, 100)
                with pytest.raises(trio.Cancelled):
                    await sockio.send_all(ours, b"unsent")
            assert await sockio.receive_some(ours, 100) == b"unread"
            await ours.send_eof()
            assert await theirs.receive_some(100) == b""  # "unsent" never went


async def test_send_all_beyond_the_socket_buffer_delivers_every_byte_in_order() -> None:
    data = bytes(range(256)) * (32 * 1024)  # 8 MiB: far more than the kernel takes at once
    with trio.fail_after(20):
        async with tcp_pair() as (ours, theirs):
            received = bytearray()

            async def read_slowly() -> None:
                await trio.sleep(0.1)  # the send buffer fills first: a partial write
                while len(received) < len(data):
                    chunk = await theirs.receive_some(65536)
                    assert chunk
                    received.extend(chunk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_slowly)
                await sockio.send_all(ours, data)
            assert received == data
