"""Out of file descriptors, for real: ``prlimit`` on a daemon process, more clients than it has
descriptors.  Accepting pauses and retries; the listener never dies; afterwards it serves.
"""

from __future__ import annotations

import os
import subprocess

import trio
from ccx_testing import DaemonProcess, open_client, run_daemon, wait_until
from faults_net_testing import connect, http_get, upgrade_head

CLIENTS = 96  # far more than the descriptors left to the daemon
HEADROOM = 24  # descriptors the daemon may open beyond those it holds when limited


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def limit_descriptors(pid: int, limit: int) -> None:
    """RLIMIT_NOFILE of a running process, set from outside with util-linux prlimit."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True)


def logged(daemon: DaemonProcess, event: str) -> list[str]:
    return [line for line in daemon.stderr_lines if f'"event":"{event}"' in line]


async def flood_of_clients(port: int, count: int) -> list[trio.socket.SocketType]:
    """`count` connections that send an upgrade head and then hold on."""
    socks = []
    for _ in range(count):
        sock = await connect(port)
        await sock.send(upgrade_head(port))
        socks.append(sock)
    return socks


async def test_accepting_pauses_under_emfile_and_the_daemon_serves_after() -> None:
    with trio.fail_after(120):
        async with run_daemon() as daemon:
            pid = daemon.process.pid
            limit_descriptors(pid, open_fds(pid) + HEADROOM)
            socks = await flood_of_clients(daemon.port, CLIENTS)
            await wait_until(lambda: bool(logged(daemon, "accept.paused")), bound=30)
            assert '"errno":"EMFILE"' in logged(daemon, "accept.paused")[0]
            for sock in socks:
                sock.close()
            await wait_until(lambda: bool(logged(daemon, "accept.resumed")), bound=30)
            async with open_client(daemon.url) as client:
                run = await client.execute(argv=["echo", "served"])
                record = await client.wait_completed(run)
            assert bytes(record.stdout) == b"served\n"
            metrics = (await http_get(daemon.port, "/metrics")).decode()
            assert 'ccx_accept_errors_total{errno="EMFILE"}' in metrics
            assert daemon.process.returncode is None


async def test_emfile_while_runs_start_and_end_takes_nothing_down() -> None:
    with trio.fail_after(180):
        async with run_daemon() as daemon, open_client(daemon.url) as client:
            pid = daemon.process.pid
            # A durable run and a live one that end while the daemon has no descriptors left.
            durable = (
                await client.call("execute", argv=["sh", "-c", "sleep 1; echo d"], durable=True)
            )["run"]
            live = await client.execute(argv=["sh", "-c", "sleep 1; echo l"])
            limit_descriptors(pid, open_fds(pid) + HEADROOM)
            socks = await flood_of_clients(daemon.port, CLIENTS)
            await wait_until(lambda: bool(logged(daemon, "accept.paused")), bound=30)
            # Starting a run needs pipes: under EMFILE it is refused with a clear error, or
            # runs if descriptors were freed meanwhile; either way it is answered.
            response = await client.request("execute", {"argv": ["true"]})
            assert "result" in response or response["error"]["code"] == -32006
            await client.wait_completed(live)
            for sock in socks:
                sock.close()
            await wait_until(lambda: bool(logged(daemon, "accept.resumed")), bound=30)
            status = await client.call("status", run=durable)
            assert status["state"] == "completed"
            assert status["outcome"] == "exited"
            async with open_client(daemon.url) as again:
                run = await again.execute(argv=["echo", "served"])
                assert bytes((await again.wait_completed(run)).stdout) == b"served\n"
            assert daemon.process.returncode is None
