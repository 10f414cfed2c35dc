"""The report's sections for the per-run cost, memory and state-directory workloads (W5,
W9-W12), each beside its floor measured in the same run."""

from __future__ import annotations

from collections.abc import Callable

from bench.measure import Sizes
from bench.report import Runs, Target, _all, _col
from bench.stalled import LARGE_BUFFER


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


def _w9(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    rows = [
        f"### W9 durable firehose and W10 replay — W1's `yes <63 chars> | head -c "
        f"{sizes.w9_bytes}`, live and durable, through one daemon",
        "",
        "The same run three times over one daemon: live; durable (the starting connection "
        "reads the journal as it is written); then a new connection attaches to the finished "
        "durable run from seq 0 and reads the whole journal back (W10). The ratios are to "
        "the live run of the same round; the daemon's CPU per phase is read from /proc at "
        "its ends (on a busy box it moves less than MB/s does).",
        "",
        "| | MB/s at the client | ratio to live | daemon CPU s per 100 MB | events |",
        "|---|---|---|---|---|",
        f"| live | {_col(runs, 'live_mbps', '{:.0f}')} | 1 | "
        f"{_col(runs, 'live_cpu_per_100mb', '{:.2f}')} | {_all(runs, 'live_frames')} |",
        f"| **W9 durable, followed live** | **{_col(runs, 'durable_mbps', '{:.0f}')}** | "
        f"{_col(runs, 'durable_ratio', '{:.2f}')} | "
        f"{_col(runs, 'durable_cpu_per_100mb', '{:.2f}')} | {_all(runs, 'durable_frames')} |",
        f"| **W10 replay from seq 0** | **{_col(runs, 'replay_mbps', '{:.0f}')}** | "
        f"{_col(runs, 'replay_ratio', '{:.2f}')} | "
        f"{_col(runs, 'replay_cpu_per_100mb', '{:.2f}')} | {_all(runs, 'replay_frames')} |",
        "",
        f"Every byte arrived, in order: live {_all(runs, 'live_ok')}, durable "
        f"{_all(runs, 'durable_ok')}, replay {_all(runs, 'replay_ok')}. Daemon CPU for the "
        f"three {_col(runs, 'daemon_cpu', '{:.2f}')} s, client "
        f"{_col(runs, 'client_cpu', '{:.2f}')} s.",
    ]
    return rows, [
        Target("W9 durable ≥ 0.9x live", [r["durable_ratio"] for r in runs], lambda v: v >= 0.9),
        Target("W10 replay ≥ 1.5x live", [r["replay_ratio"] for r in runs], lambda v: v >= 1.5),
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
        "| **stalled `yes`, JSON text frames, default stream buffer (128 KiB)** | "
        f"**{_col(runs, 'kib', '{:.0f}')}** | {_col(runs, 'stalled_rss_mb')} "
        f"(idle {_col(runs, 'idle_rss_mb')}) |",
        f"| of which output buffers (stalled - floor) | {_col(runs, 'buffers_kib', '{:.0f}')} | |",
        "| **stalled `yes`, binary frames, default binary stream buffer (256 KiB)** | "
        f"**{_col(runs, 'binary_kib', '{:.0f}')}** | {_col(runs, 'binary_rss_mb')} |",
        f"| stalled `yes`, JSON, `--stream-buffer {LARGE_BUFFER}` | "
        f"{_col(runs, 'large_kib', '{:.0f}')} | {_col(runs, 'large_rss_mb')} |",
    ]
    return rows, [
        Target(
            "W11 daemon memory per stalled stream ≤ 512 KiB (JSON and binary, at the defaults)",
            [max(r["kib"], r["binary_kib"]) for r in runs],
            lambda v: v <= 512,
            "{:.0f}",
        )
    ]


def _w12(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    rows = [
        f"### W12 a state directory of {sizes.w12_runs:,} completed durable runs",
        "",
        "The journals (META, three output records, the completion) are written with the "
        "journal API, then a daemon starts on the directory; the floor is the same daemon "
        "on an empty one. Ready: from the process's start to the first 200 from `/readyz` "
        "(it takes runs from then on). All known: from the start to the answer of a `list` "
        "sent at once after ready (the daemon reads the directory while it serves, and a "
        "lookup of runs waits until every journal is read). Idle RSS after that. "
        "`list`: every run, median of 5 — every page one after another (a reply holds at "
        "most 768 KiB of runs, docs/protocol.md), each from its request to the whole reply "
        "on the client's socket, their times added; the client's `orjson.loads` of them is "
        "timed apart.",
        "",
        "| | ready s | all known s | idle RSS MB | `list` ms | client parse ms | runs listed |",
        "|---|---|---|---|---|---|---|",
        f"| empty state directory | {_col(runs, 'floor_ready_s', '{:.2f}')} | "
        f"{_col(runs, 'floor_known_s', '{:.2f}')} | "
        f"{_col(runs, 'floor_idle_rss_mb')} | {_col(runs, 'floor_list_ms', '{:.1f}')} | "
        f"{_col(runs, 'floor_parse_ms', '{:.1f}')} | 0 |",
        f"| **{sizes.w12_runs:,} journals** | **{_col(runs, 'ready_s', '{:.2f}')}** | "
        f"{_col(runs, 'known_s', '{:.2f}')} | "
        f"**{_col(runs, 'idle_rss_mb')}** | **{_col(runs, 'list_ms', '{:.0f}')}** | "
        f"{_col(runs, 'parse_ms', '{:.0f}')} | {_all(runs, 'listed')} |",
        "",
        f"Writing the journals took {_col(runs, 'generate_s')} s; RSS after the `list` calls "
        f"{_col(runs, 'rss_after_list_mb')} MB.",
    ]
    n = sizes.w12_runs
    return rows, [
        Target(
            f"W12 list of {n:,} runs ≤ 100 ms",
            [r["list_ms"] for r in runs],
            lambda v: v <= 100,
            "{:.0f}",
        ),
        Target("W12 ready ≤ 2 s after start", [r["ready_s"] for r in runs], lambda v: v <= 2),
        Target(
            "W12 idle RSS ≤ 150 MB", [r["idle_rss_mb"] for r in runs], lambda v: v <= 150, "{:.1f}"
        ),
    ]


SECTIONS: dict[str, Callable[[Runs, Sizes], tuple[list[str], list[Target]]]] = {
    "W5": _w5,
    "W9": _w9,
    "W11": _w11,
    "W12": _w12,
}
