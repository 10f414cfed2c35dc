"""Real TCP resets at every point of a connection's life never take the daemon down.

Observed on main before the connection boundary: an upgrade request followed by an RST
(``SO_LINGER {1, 0}``) killed the daemon process after one to six such connections, because
``getpeername()``'s ENOTCONN and the handshake's ``ConnectionClosed`` reached
``trio.serve_listeners``.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import trio
from ccx_testing import make_config, open_client, run_daemon, start_daemon, wait_until
from faults_net_testing import (
    STAGES,
    connect,
    http_get,
    read_until,
    reset,
    reset_at,
    upgrade_head,
)

from bench.rawws import client_frame
from cc_executor.supervision.testing import marked_processes

RESETS = 1000


async def test_a_thousand_resets_at_every_stage_leave_the_daemon_serving() -> None:
    with trio.fail_after(240):
        async with run_daemon() as daemon:
            for stage in itertools.islice(itertools.cycle(STAGES), RESETS):
                await reset_at(daemon.port, stage)
            with trio.fail_after(10):  # a bound, not a measurement: a client is served
                async with open_client(daemon.url) as client:
                    run = await client.execute(argv=["echo", "still here"])
                    record = await client.wait_completed(run)
            assert bytes(record.stdout) == b"still here\n"
            assert (await http_get(daemon.port, "/healthz")).startswith(b"HTTP/1.1 200")
            assert daemon.process.returncode is None
            assert not [line for line in daemon.stderr_lines if "Traceback" in line]


async def test_a_reset_while_lines_trickle_out_ends_the_run_and_the_daemon_serves_on() -> None:
    """Lines now and then go from the pipe's reader straight to the socket (pump.py, `take`):
    a real RST while they do ends the run (the disconnect cancels it), nothing escapes."""
    trickle = ["sh", "-c", "while :; do echo tick; sleep 0.005; done"]
    with trio.fail_after(60):
        async with run_daemon() as daemon:
            for _ in range(5):
                async with open_client(daemon.url) as client:
                    run = await client.execute(argv=trickle)
                    await client.wait_output(run, b"tick\ntick\n")
                    reset(client.ws._stream.socket)  # type: ignore[attr-defined]
                await wait_until(lambda gone=run: not marked_processes(gone), bound=30)
            async with open_client(daemon.url) as client:
                run = await client.execute(argv=["echo", "still here"])
                record = await client.wait_completed(run)
            assert bytes(record.stdout) == b"still here\n"
            assert daemon.process.returncode is None
            assert not [line for line in daemon.stderr_lines if "Traceback" in line]


async def reset_behind_a_batch(port: int, batch: list[dict[str, Any]]) -> None:
    """Connect, take the greeting, send `batch` and reset at once: the reader sees the reset
    while the batch's task is still answering it."""
    sock = await connect(port)
    await sock.send(upgrade_head(port))
    assert b'"connected"' in await read_until(sock, b'"connected"')
    await sock.send(client_frame(0x1, orjson.dumps(batch)))
    reset(sock)


async def test_a_reset_right_behind_a_batch_of_starts_ends_every_run_it_started() -> None:
    """Observed on main: a batch is served by a task of its own, so a client that sends a
    batch of executes and resets at once can have its reader see the reset — and the session
    end its runs — before the batch has started them: those runs then lived on with nobody to
    see them (``list`` showed them running; the session did not close until they ended), and
    ``sleep 300`` runs for 300 s.  Each run started for a connection that is gone is now
    ended through the ladder as it starts."""
    batch = [
        {"jsonrpc": "2.0", "id": k, "method": "execute", "params": {"argv": ["sleep", "300"]}}
        for k in range(4)
    ]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            served = await start_daemon(nursery, make_config())
            for _ in range(8):
                await reset_behind_a_batch(served.port, batch)
            # Every session has closed and every run has ended (bounded, not timed).
            await wait_until(
                lambda: not served.daemon.sessions and not served.daemon.runs.live, bound=30
            )
            nursery.cancel_scope.cancel()


async def test_a_reset_right_behind_a_batch_naming_a_run_closes_the_session() -> None:
    """Observed on main: a batch's control, signal, stdin or attach of a run that reached the
    session after it had ended (its reader saw the reset) made the run's queue tasks or a
    journal tail in the ended session's nursery, and nothing ever ended them: the session
    never closed, and kept its socket and its place in ``max_connections`` for good.  Such a
    request is now answered (to nobody) inline and follows nothing."""
    looks = [{"jsonrpc": "2.0", "id": 100 + k, "method": "list"} for k in range(3)]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            served = await start_daemon(nursery, make_config())
            async with open_client(served.url) as client:
                run = await client.execute(argv=["sleep", "300"], durable=True)
                for method, params in (
                    ("control", {"type": "RESUME", "run": run}),
                    ("signal", {"run": run, "signal": "SIGCONT"}),
                    ("stdin", {"run": run, "data": "x"}),
                    ("attach", {"run": run, "from_seq": 0}),
                ):
                    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                    for _ in range(6):
                        await reset_behind_a_batch(served.port, [*looks, request])
                # Only the client's own session is left (bounded, not timed).
                await wait_until(lambda: len(served.daemon.sessions) == 1, bound=20)
                await client.call("control", type="CANCEL", run=run)
            nursery.cancel_scope.cancel()
