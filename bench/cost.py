"""W5 beside its floor: one run measures the spawn floor (bench/floor.py, its own process) and
then the daemon doing the same work for as many WebSocket clients, so the ratios hold on any
machine of this kind however busy it is."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any

import orjson

from bench import procfs
from bench.daemon import running_daemon

if TYPE_CHECKING:
    from bench.measure import Sizes

FLOOR_BOUND = 120.0


def spawn_floor(connections: int, lines: int) -> dict[str, Any]:
    """The floor's wall and CPU seconds (python -m bench.floor, a fresh process)."""
    from bench.measure import ROOT

    out = subprocess.run(
        [sys.executable, "-m", "bench.floor", str(connections), str(lines)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=FLOOR_BOUND,
    ).stdout
    result: dict[str, Any] = orjson.loads(out)
    return result


def w5_concurrency(sizes: Sizes) -> dict[str, Any]:
    from bench.measure import run_client

    n = sizes.w5_connections
    floor = spawn_floor(n, sizes.w5_lines)
    with running_daemon() as daemon:
        cpu = procfs.cpu_seconds(daemon.pid)
        client = run_client(daemon, "W5", connections=n, count=sizes.w5_lines)
        daemon_cpu = procfs.cpu_seconds(daemon.pid) - cpu
        peak = procfs.peak_rss_kib(daemon.pid)
    ms = 1000.0 / n
    return {
        "connections": client["connections"],
        "successes": client["successes"],
        "errors": client["errors"],
        "wall_s": client["wall"],
        "runs_per_s": client["runs_per_s"],
        "peak_rss_mb": peak / 1024,
        "daemon_cpu": daemon_cpu,
        "client_cpu": client["client_cpu"],
        "cpu_per_run_ms": daemon_cpu * ms,
        "floor_wall_s": floor["wall"],
        "floor_cpu_per_run_ms": floor["cpu"] * ms,
        "floor_successes": floor["successes"],
        "wall_ratio": client["wall"] / floor["wall"],
        "cpu_ratio": daemon_cpu / floor["cpu"],
    }


def _w11(sizes: Sizes) -> dict[str, Any]:
    from bench.stalled import w11_stalled

    return w11_stalled(sizes)


def _w9(sizes: Sizes) -> dict[str, Any]:
    from bench.durable import w9_w10

    return w9_w10(sizes)


def _w12(sizes: Sizes) -> dict[str, Any]:
    from bench.statedir import w12_state_dir

    return w12_state_dir(sizes)


# W9 measures W10 too (the replay reads the journal W9 wrote): `--only W9` or W10 runs both.
ALIASES = {"W10": "W9"}
WORKLOADS = {"W5": w5_concurrency, "W9": _w9, "W11": _w11, "W12": _w12}
