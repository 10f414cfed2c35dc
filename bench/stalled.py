"""W11: memory per stalled stream. `python -m bench.stalled PORT N` is the client side.

The client opens N WebSocket connections, each running `yes`, and never reads a byte after the
handshake (its receive buffers are set small, so the kernel holds little on its side). It prints
`ready` once every run has been requested, then holds the connections until its stdin closes;
closing them ends the runs (a connection's runs end with it). The measuring side samples the
daemon's RSS until it stops growing: every stream is then stalled — each child blocked in
write(), the daemon holding what it had read.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson
import trio

from bench import procfs
from bench.daemon import raise_fd_limit, running_daemon
from bench.rawws import RawWebSocket, client_frame
from cc_executor.protocol.binary import BINARY_SUBPROTOCOL

if TYPE_CHECKING:
    from bench.measure import Sizes

CLIENT_RCVBUF = 16 * 1024
SETTLE_BOUND = 60.0  # seconds the daemon's RSS may take to stop growing
SETTLED = 2.0  # RSS flat (within 1 %) this long: every stream is stalled
SAMPLE = 0.25
ARGV = ["yes"]  # what every stalled run runs


async def _open(
    port: int, index: int, argv: list[str], subprotocol: str | None
) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    offer = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    await stream.send_all(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"{offer}Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    raw = RawWebSocket(stream)
    head = await raw.read_response_head()
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode("latin-1"))
    request = {"jsonrpc": "2.0", "id": index, "method": "execute", "params": {"argv": argv}}
    await stream.send_all(client_frame(0x1, orjson.dumps(request)))
    return stream


async def _client(port: int, n: int, argv: list[str], subprotocol: str | None) -> None:
    streams: list[trio.SocketStream] = []
    with trio.fail_after(SETTLE_BOUND):
        for i in range(n):
            streams.append(await _open(port, i, argv, subprotocol))
    print("ready", flush=True)
    await trio.to_thread.run_sync(sys.stdin.read)  # until the measuring side closes it
    for stream in streams:
        await trio.aclose_forcefully(stream)


def _settle(pid: int) -> tuple[int, float]:
    """Sample RSS until it has been flat for SETTLED seconds; (KiB, seconds it took)."""
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    while time.monotonic() - started < SETTLE_BOUND:
        now = time.monotonic()
        samples.append((now, procfs.rss_kib(pid)))
        recent = [rss for t, rss in samples if t >= now - SETTLED]
        if now - started > SETTLED and max(recent) <= min(recent) * 1.01:
            break
        time.sleep(SAMPLE)
    return samples[-1][1], time.monotonic() - started


def stalled_streams(
    n: int, *daemon_args: str, argv: list[str] = ARGV, subprotocol: str = ""
) -> dict[str, Any]:
    """Daemon RSS per stalled stream: (settled RSS - idle RSS) / n."""
    from bench.measure import ROOT

    raise_fd_limit()
    with running_daemon(*daemon_args) as daemon:
        idle = procfs.rss_kib(daemon.pid)
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.stalled",
                str(daemon.port),
                str(n),
                orjson.dumps(argv),
                subprotocol,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert client.stdin is not None
        assert client.stdout is not None
        try:
            if client.stdout.readline().strip() != b"ready":
                raise RuntimeError("the W11 client did not open its connections")
            rss, settle = _settle(daemon.pid)
            peak = procfs.peak_rss_kib(daemon.pid)
        finally:
            client.stdin.close()
            client.wait(SETTLE_BOUND)
    return {
        "streams": n,
        "idle_rss_mb": idle / 1024,
        "stalled_rss_mb": rss / 1024,
        "peak_rss_mb": peak / 1024,
        "kib_per_stream": (rss - idle) / n,
        "settle_s": settle,
    }


LARGE_BUFFER = 512 * 1024


def w11_stalled(sizes: Sizes) -> dict[str, Any]:
    """W11 beside its floor: the same connections with runs that write nothing (`sleep`), then
    stalled `yes` runs at the default stream buffers — JSON clients', and binary clients'
    (their runs read CCX_BINARY_STREAM_BUFFER at a time) — and JSON at a large one."""
    n = sizes.w11_streams
    floor = stalled_streams(n, argv=["sleep", "3600"])
    default = stalled_streams(n)
    binary = stalled_streams(n, subprotocol=BINARY_SUBPROTOCOL)
    large = stalled_streams(n, "--stream-buffer", str(LARGE_BUFFER), argv=ARGV)
    return {
        "streams": n,
        "floor_kib": floor["kib_per_stream"],
        "kib": default["kib_per_stream"],
        "buffers_kib": default["kib_per_stream"] - floor["kib_per_stream"],
        "binary_kib": binary["kib_per_stream"],
        "large_kib": large["kib_per_stream"],
        "idle_rss_mb": default["idle_rss_mb"],
        "stalled_rss_mb": default["stalled_rss_mb"],
        "binary_rss_mb": binary["stalled_rss_mb"],
        "large_rss_mb": large["stalled_rss_mb"],
    }


if __name__ == "__main__":
    trio.run(
        _client, int(sys.argv[1]), int(sys.argv[2]), orjson.loads(sys.argv[3]), sys.argv[4] or None
    )
