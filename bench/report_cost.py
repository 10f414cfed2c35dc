"""The report's sections for the per-run cost, memory and state-directory workloads (W5,
W9-W12), each beside its floor measured in the same run."""

from __future__ import annotations

from collections.abc import Callable

from bench.measure import Sizes
from bench.report import Runs, Target, _all, _col


def _w5(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    n = sizes.w5_connections
    rows = [
        f"### W5 concurrency — {n} simultaneous connections, each `seq 1 {sizes.w5_lines}`, "
        "beside the spawn floor",
        "",
        "The floor (bench/floor.py) is a Python process that spawns the same children at once "
        "(asyncio `create_subprocess_exec`, stdout on a pipe), reads each to EOF and reaps it: "
        "no daemon, no WebSocket, no containment. CPU is the process's own (children excluded).",
        "",
        "| | successes | wall s | CPU ms per run | peak RSS MB |",
        "|---|---|---|---|---|",
        f"| spawn floor | {_all(runs, 'floor_successes')} | {_col(runs, 'floor_wall_s', '{:.2f}')} "
        f"| {_col(runs, 'floor_cpu_per_run_ms', '{:.2f}')} | |",
        f"| **daemon** (client CPU {_col(runs, 'client_cpu', '{:.2f}')} s) | "
        f"{_all(runs, 'successes')} | {_col(runs, 'wall_s', '{:.2f}')} | "
        f"{_col(runs, 'cpu_per_run_ms', '{:.2f}')} | {_col(runs, 'peak_rss_mb')} |",
        f"| daemon ÷ floor | | {_col(runs, 'wall_ratio', '{:.2f}')} | "
        f"{_col(runs, 'cpu_ratio', '{:.2f}')} | |",
        "",
        "Runs started per second (first request to last start): "
        f"{_col(runs, 'runs_per_s', '{:.0f}')}.",
    ]
    return rows, [
        Target(
            f"W5 connections completed (of {n})",
            [r["successes"] for r in runs],
            lambda v: v == n,
            "{:.0f}",
        ),
        Target(
            "W5 wall ≤ 1.5x the spawn floor", [r["wall_ratio"] for r in runs], lambda v: v <= 1.5
        ),
        Target(
            "W5 daemon CPU per run ≤ 2x the floor's",
            [r["cpu_ratio"] for r in runs],
            lambda v: v <= 2,
        ),
        Target(
            "W5 daemon peak RSS ≤ 150 MB",
            [r["peak_rss_mb"] for r in runs],
            lambda v: v <= 150,
            "{:.1f}",
        ),
    ]


def _w11(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    rows = [
        f"### W11 memory per stalled stream — {sizes.w11_streams} connections running `yes` "
        "whose clients never read",
        "",
        "Daemon RSS once it has stopped growing, minus its RSS before the connections, per "
        "stream. The floor is the same connections running `sleep` (the connection, the "
        "session and the run without output). Kernel socket and pipe buffers are not the "
        "daemon's RSS and are not counted.",
        "",
        "| | KiB per stream | daemon RSS MB |",
        "|---|---|---|",
        f"| floor: connections running `sleep` | {_col(runs, 'floor_kib', '{:.0f}')} | |",
        f"| **stalled `yes`, default stream buffer (32 KiB)** | **{_col(runs, 'kib', '{:.0f}')}**"
        f" | {_col(runs, 'stalled_rss_mb')} (idle {_col(runs, 'idle_rss_mb')}) |",
        f"| of which output buffers (stalled - floor) | {_col(runs, 'buffers_kib', '{:.0f}')} | |",
        f"| stalled `yes`, `--stream-buffer 131072` | {_col(runs, 'large_kib', '{:.0f}')} | "
        f"{_col(runs, 'large_rss_mb')} |",
    ]
    return rows, [
        Target(
            "W11 daemon memory per stalled stream ≤ 512 KiB",
            [r["kib"] for r in runs],
            lambda v: v <= 512,
            "{:.0f}",
        )
    ]


SECTIONS: dict[str, Callable[[Runs, Sizes], tuple[list[str], list[Target]]]] = {
    "W5": _w5,
    "W11": _w11,
}
