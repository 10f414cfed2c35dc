"""A client that ends its connection with a close frame (or a bad frame) behind output it never
reads: the daemon's answer cannot go out, and it must not wait for it for ever.

Observed on main (an outside probe, real sockets with a small receive buffer): a client whose
run floods `yes` and that then sends its close frame, keeping the socket open without reading,
kept its session, its `max_connections` place and its run (blocked in write) for as long as it
stayed connected: the reader waited for the socket to take its reply to the close, and only
then stopped reading, so the session never learned that the client had closed.  The same for a
frame that fails the connection (invalid UTF-8: the 1007 close frame).  Now the daemon's close
frames wait at most ``close_timeout`` for the socket; then the connection is abandoned (1006),
its session ends and its runs go through the ladder.
"""

from __future__ import annotations

import select

import attrs
import orjson
import pytest
import trio
from ccx_testing import Served, make_config, start_daemon, wait_until
from faults_net_testing import open_stalled

from bench.rawws import client_frame
from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.config.transport import TransportConfig
from cc_executor.executor.runs.live import LiveRun
from cc_executor.supervision.events import RunState
from cc_executor.supervision.testing import marked_processes

CLOSE = client_frame(0x8, (1000).to_bytes(2, "big"))
PING = client_frame(0x9, b"keepalive")
CLOSING = {
    "close": CLOSE,
    "invalid utf-8": client_frame(0x1, b'{"x": "\xff"}'),
    # The pong cannot go out either: it must not keep the reader from the close behind it.
    "ping, then close": PING + CLOSE,
}


async def open_stalled_flood(served: Served) -> tuple[trio.SocketStream, LiveRun]:
    """A client that never reads, its run flooding `yes`, the daemon's socket full."""
    execute = {"jsonrpc": "2.0", "id": 1, "method": "execute", "params": {"argv": ["yes"]}}
    stream = await open_stalled(served.port, None)
    await stream.send_all(client_frame(0x1, orjson.dumps(execute)))
    await wait_until(lambda: served.daemon.runs.live == 1)
    (live,) = served.daemon.runs.live_runs()
    (session,) = served.daemon.sessions
    sock = session.ws._stream.socket
    # `yes` writes far more than the kernel's buffers hold: once the daemon's socket takes
    # nothing more, whatever it sends next waits for a client that never reads.
    await wait_until(lambda: not writable(sock.fileno()), bound=30)
    return stream, live


def writable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(0))


def short_close_timeout() -> ServerConfig:
    config = make_config()
    config = attrs.evolve(config, transport=attrs.evolve(config.transport, close_timeout=1.0))
    assert isinstance(config.transport, TransportConfig)
    return config


@pytest.mark.parametrize("ending", sorted(CLOSING))
async def test_a_close_behind_unread_output_ends_the_session_within_close_timeout(
    ending: str,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            served = await start_daemon(nursery, short_close_timeout())
            stream, live = await open_stalled_flood(served)
            await stream.send_all(CLOSING[ending])
            # The session ends and its run with it (bounded, not timed); the socket stays
            # open and unread meanwhile.
            await wait_until(lambda: not served.daemon.sessions and live.done.is_set(), bound=30)
            assert live.completion is not None
            assert live.completion.reason == "client disconnected"
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


async def test_a_ping_behind_unread_output_does_not_keep_a_cancel_from_being_read() -> None:
    """Observed on main: the reader answered a ping itself and waited for the socket to take
    the pong, so a client behind output it reads slowly (a keepalive ping, then a CANCEL) had
    its CANCEL unread, and its run flooding on, for as long as the client did not read.  The
    pong now waits for the socket on its own; the reader goes on reading."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            served = await start_daemon(nursery, short_close_timeout())
            stream, live = await open_stalled_flood(served)
            cancel = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "control",
                "params": {"type": "CANCEL", "run": live.run_id},
            }
            await stream.send_all(PING + client_frame(0x1, orjson.dumps(cancel)))
            # The CANCEL is read and its ladder ends the run's processes (bounded, not
            # timed); its output and completion wait for the client, nothing is dropped.
            await wait_until(lambda: not marked_processes(live.run_id), bound=30)
            assert live.run.state is RunState.ENDING
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()
