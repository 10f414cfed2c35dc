"""W9 durable firehose and W10 replay, each beside the same run live, through one daemon.

`python -m bench.durable PORT BYTES` is the client: W1's firehose (`yes <63 chars> | head -c
BYTES`) once live, once as a durable run (the starting connection is attached from seq 0 and
reads the journal as it is written), then a second connection attaches to the finished durable
run from seq 0 and reads the whole journal back. Each phase reports MB/s at the client and
checks that every byte arrived in order.
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import orjson

from bench import procfs
from bench.daemon import running_daemon
from bench.streams import READ_BOUND, firehose_argv
from bench.wsclient import WsClient, connect

if TYPE_CHECKING:
    from bench.measure import Sizes

LINE = "x" * 63
MB = 1e6


def _read(client: WsClient, request_id: int) -> dict[str, Any]:
    """Read output until `process.completed`; bytes, seconds, seq errors, the run id."""
    started = time.perf_counter()
    deadline = started + READ_BOUND
    received = 0
    expected_seq = 1
    seq_errors = 0
    frames = 0
    run_id = None
    while time.perf_counter() < deadline:
        message = client.read_message()
        method = message.get("method")
        if method == "process.output":
            params = message["params"]
            frames += 1
            if params["seq"] != expected_seq:
                seq_errors += 1
            expected_seq = params["seq"] + 1
            if params["type"] == "stdout":
                received += len(params["data"])
        elif method == "process.completed":
            return {
                "seconds": time.perf_counter() - started,
                "bytes": received,
                "seq_errors": seq_errors + (message["params"]["seq"] != expected_seq),
                "frames": frames,
                "run": run_id,
            }
        elif message.get("id") == request_id:
            if "error" in message:
                raise RuntimeError(f"request failed: {message['error']}")
            run_id = message["result"].get("run", run_id)
    raise TimeoutError(f"no completion within {READ_BOUND} s")


def client(port: int, total_bytes: int, daemon_pid: int) -> dict[str, Any]:
    """Each phase's figures, with the daemon's CPU seconds during it (read from /proc at the
    phase's ends: less moved by the box's load than MB/s)."""
    argv = firehose_argv(total_bytes, LINE)
    figures: dict[str, Any] = {}
    for phase, params in (("live", {"argv": argv}), ("durable", {"argv": argv, "durable": True})):
        conn = connect(port)
        cpu = procfs.cpu_seconds(daemon_pid)
        figures[phase] = _read(conn, conn.request("execute", params))
        figures[phase]["daemon_cpu"] = procfs.cpu_seconds(daemon_pid) - cpu
        conn.close()
    conn = connect(port)
    run = figures["durable"]["run"]
    cpu = procfs.cpu_seconds(daemon_pid)
    figures["replay"] = _read(conn, conn.request("attach", {"run": run, "from_seq": 0}))
    figures["replay"]["daemon_cpu"] = procfs.cpu_seconds(daemon_pid) - cpu
    conn.close()
    return figures


def w9_w10(sizes: Sizes) -> dict[str, Any]:
    """W9 and W10 share one daemon and one client run; the figures of both are returned."""
    from bench.measure import run_client

    n = sizes.w9_bytes
    with tempfile.TemporaryDirectory() as state, running_daemon("--state-dir", state) as daemon:
        cpu = procfs.cpu_seconds(daemon.pid)
        result = run_client(daemon, "W9", total_bytes=n, daemon_pid=daemon.pid)
        daemon_cpu = procfs.cpu_seconds(daemon.pid) - cpu
    figures: dict[str, Any] = {"daemon_cpu": daemon_cpu, "client_cpu": result["client_cpu"]}
    for phase in ("live", "durable", "replay"):
        got = result[phase]
        figures[f"{phase}_mbps"] = got["bytes"] / got["seconds"] / MB
        figures[f"{phase}_ok"] = got["bytes"] == n and got["seq_errors"] == 0
        figures[f"{phase}_frames"] = got["frames"]
        figures[f"{phase}_cpu_per_100mb"] = got["daemon_cpu"] * 100 * MB / n
    figures["durable_ratio"] = figures["durable_mbps"] / figures["live_mbps"]
    figures["replay_ratio"] = figures["replay_mbps"] / figures["live_mbps"]
    return figures


if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(client(*map(int, sys.argv[1:4]))))
