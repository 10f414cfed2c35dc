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


SECTIONS: dict[str, Callable[[Runs, Sizes], tuple[list[str], list[Target]]]] = {"W5": _w5}
