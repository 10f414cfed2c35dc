"""The daemon paused for real (SIGSTOP) while clients give up on it, then resumed (SIGCONT).

While the daemon is stopped the kernel still completes TCP handshakes into the listen backlog;
clients send their upgrade, wait out their patience, and reset.  On SIGCONT the daemon accepts
a backlog of dead connections.  Observed on main: that killed the daemon (``getpeername`` and
the handshake raised into ``trio.serve_listeners``).
"""

from __future__ import annotations

import signal

import trio
from ccx_testing import open_client, run_daemon
from faults_net_testing import connect, http_get, read_until, reset, upgrade_head

IMPATIENT_CLIENTS = 200
PATIENCE = 0.5  # how long each client waits for the 101 before it gives up with an RST


async def give_up_on(port: int, stage: int) -> None:
    """Connect, maybe send the upgrade, wait for an answer that does not come, reset."""
    sock = await connect(port)
    if stage % 2:
        await sock.send(upgrade_head(port))
    with trio.move_on_after(PATIENCE):
        await read_until(sock, b"\r\n\r\n")
    reset(sock)


async def test_a_stopped_daemon_resumes_and_serves_after_clients_gave_up() -> None:
    with trio.fail_after(120):
        async with run_daemon() as daemon, open_client(daemon.url) as before:
            run = await before.execute(argv=["sh", "-c", "read line; echo got $line"], stdin="pipe")
            daemon.process.send_signal(signal.SIGSTOP)
            try:
                async with trio.open_nursery() as nursery:
                    for stage in range(IMPATIENT_CLIENTS):
                        nursery.start_soon(give_up_on, daemon.port, stage)
            finally:
                daemon.process.send_signal(signal.SIGCONT)
            # A new client is served, and the connection from before the stop still works.
            async with open_client(daemon.url) as after:
                runs = (await after.call("list"))["runs"]
                assert [(r["run"], r["here"]) for r in runs] == [(run, False)]
            await before.call("stdin", run=run, data="hello\n", eof=True)
            record = await before.wait_completed(run)
            assert bytes(record.stdout) == b"got hello\n"
            assert (await http_get(daemon.port, "/healthz")).startswith(b"HTTP/1.1 200")
            assert daemon.process.returncode is None
