"""Reading and writing a connection's socket: trio's semantics, fewer trips through its scheduler.

``trio.SocketStream.receive_some`` and ``send_all`` check for cancellation, try the call, and
once it has succeeded pass through the scheduler (a cancel-shielded checkpoint) so that every
call is a schedule point.  A call that found the socket not ready waits in ``wait_readable``
(or ``wait_writable``), which is a schedule point already, and then yields a second time after
its retry succeeds.  A connection's reads nearly always wait (a request arrives long after the
last one), so each cost two passes of the scheduler where one does: these functions leave the
second one out when the first happened, and otherwise do what trio's do — the same checkpoint
before any byte moves, the same errors (``BrokenResourceError`` from the ``OSError``,
``ClosedResourceError`` for a socket closed before or during the call).

They read and write the socket's descriptor with ``os.read`` and ``os.write`` (on a TCP socket,
``recv`` and ``send`` without flags), so that the call made once the socket is ready is a plain
call, not another trio coroutine.  The caller must be the only task reading (or writing) the
socket: ours are (the WebSocket reader; the send lock).
"""

from __future__ import annotations

import os

import trio


def _descriptor(stream: trio.SocketStream) -> int:
    fd = stream.socket.fileno()
    if fd == -1:
        raise trio.ClosedResourceError("the socket was closed")
    return fd


async def receive_some(stream: trio.SocketStream, max_bytes: int) -> bytes:
    """At most `max_bytes` from `stream` once there are any; ``b""`` at the end of the stream.

    Raises:
        trio.BrokenResourceError: the read failed (the peer reset the connection).
        trio.ClosedResourceError: the socket was closed.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    waited = False
    while True:
        fd = _descriptor(stream)
        try:
            data = os.read(fd, max_bytes)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(stream.socket)  # the call's schedule point
            waited = True
            continue
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data


async def send_all(stream: trio.SocketStream, data: bytes) -> None:
    """Write every byte of `data` to `stream`.

    Raises:
        trio.BrokenResourceError: the write failed (the peer is gone).
        trio.ClosedResourceError: the socket was closed.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        sent = os.write(_descriptor(stream), data)
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
    if sent == len(data):
        await trio.lowlevel.cancel_shielded_checkpoint()
        return
    # The kernel took part: trio's own loop waits for room for the rest (a schedule point).
    await stream.send_all(memoryview(data)[sent:])
