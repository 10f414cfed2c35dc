"""The report's sections for the live path: W1 (three framings beside the raw pipe), W4 and
W8 (latency beside a reader on the pipe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.table import Runs, Target, _all, _col

if TYPE_CHECKING:
    from bench.measure import Sizes

Section = tuple[list[str], list[Target]]


def _w1_row(runs: Runs, prefix: str, title: str, fmt: str = "{:.0f}") -> str:
    cpu = "{:.1f}" if prefix == "original_" else "{:.2f}"
    return (
        f"| {title} | {_col(runs, prefix + 'mbps', fmt)} | {_col(runs, prefix + 'ratio', '{:.3f}')}"
        f" | daemon {_col(runs, prefix + 'daemon_cpu_per_100mb', cpu)}"
        f"; client {_col(runs, prefix + 'client_cpu_per_100mb', cpu)} | "
        f"{_col(runs, prefix + 'peak_rss_mb')} |"
    )


def w1_section(runs: Runs, sizes: Sizes) -> Section:
    rows = [
        f"### W1 firehose — `yes <63 chars> | head -c {sizes.w1_bytes}`",
        "",
        "One daemon at its defaults, three clients one after the other, each on a raw socket: "
        "binary output frames on `/` (subprotocol `ccx.binary.v1`), JSON text frames on `/`, "
        "and the original's framing on `/ws/mcp` (a text frame per line) — at the defaults, a "
        "binary client's run reading 256 KiB at a time and a JSON client's 128 KiB; then a "
        "daemon reading 512 KiB for both (`--stream-buffer`, `CCX_BINARY_STREAM_BUFFER`: W11's "
        "knobs, more memory per stalled stream). The targets are judged at the defaults.",
        "",
        "| | MB/s | ratio to raw pipe | CPU s per 100 MB | peak RSS MB |",
        "|---|---|---|---|---|",
        f"| raw pipe (1 MiB reads) | {_col(runs, 'raw_mbps', '{:.0f}')} | 1 | | |",
        f"| Python, 64 KiB reads | {_col(runs, 'py64_mbps', '{:.0f}')} | "
        f"{_col(runs, 'py64_ratio', '{:.2f}')} | | |",
        f"| Python relaying 128 KiB reads over loopback TCP to a reader process | "
        f"{_col(runs, 'relay_mbps', '{:.0f}')} | {_col(runs, 'relay_ratio', '{:.3f}')} | "
        f"relay {_col(runs, 'relay_cpu_per_100mb', '{:.2f}')} | |",
        _w1_row(runs, "binary_", "**daemon → client, binary frames**"),
        _w1_row(runs, "", "**daemon → client, JSON text frames**"),
        _w1_row(runs, "big_binary_", "daemon → client, binary frames, 512 KiB reads"),
        _w1_row(runs, "big_", "daemon → client, JSON text frames, 512 KiB reads"),
        _w1_row(
            runs,
            "original_",
            f"daemon → client on `/ws/mcp`, the original's framing ({sizes.w1_original_bytes} "
            "bytes)",
            "{:.2f}",
        ),
        "",
        f"Every byte arrived, in order, in every run: {_all(runs, 'binary_bytes_ok')} binary, "
        f"{_all(runs, 'bytes_ok')} JSON, {_all(runs, 'original_bytes_ok')} on `/ws/mcp`. "
        f"Frames per run: {_all(runs, 'binary_frames')} binary, {_all(runs, 'frames')} JSON, "
        f"{_all(runs, 'original_frames')} on `/ws/mcp`.",
    ]
    return rows, [
        Target(
            "W1 ≥ 300 MB/s at the client (JSON)",
            [r["mbps"] for r in runs],
            lambda v: v >= 300,
            "{:.0f}",
        ),
        Target(
            "W1 binary frames ≥ 0.8x the raw pipe",
            [r["binary_ratio"] for r in runs],
            lambda v: v >= 0.8,
        ),
        Target("W1 JSON text ≥ 0.5x the raw pipe", [r["ratio"] for r in runs], lambda v: v >= 0.5),
    ]


def w4_section(runs: Runs, sizes: Sizes) -> Section:
    def pair(key: str, fmt: str = "{:.2f}") -> str:
        return f"{_col(runs, key + '_p50_ms', fmt)} | {_col(runs, key + '_p99_ms', fmt)}"

    rows = [
        f"### W4 control under load — {sizes.w4_cycles} PAUSE/RESUME cycles during W1's flood",
        "",
        "| latency (ms) | p50 | p99 |",
        "|---|---|---|",
        f"| PAUSE request → reply | {pair('pause_reply')} |",
        f"| PAUSE request → every process in state T | {pair('pause_stopped')} |",
        f"| PAUSE reply minus every process in state T (per cycle) | {pair('reply_after_stop')} |",
        f"| RESUME request → reply | {pair('resume_reply')} |",
        f"| RESUME request → first output | {pair('resume_first_output')} |",
        f"| output after the PAUSE reply (kB) | {_col(runs, 'after_pause_p50_kb')} | "
        f"{_col(runs, 'after_pause_p99_kb')} |",
        f"| CANCEL → completion (one per run) | {_col(runs, 'cancel_ms')} | |",
        "",
        f"Processes of the run: {_all(runs, 'members')}; cycles where every one was already "
        f"stopped when the PAUSE reply arrived: {_all(runs, 'stopped_at_reply')} "
        f"of {sizes.w4_cycles}. Daemon CPU {_col(runs, 'daemon_cpu', '{:.2f}')} s, client CPU "
        f"{_col(runs, 'client_cpu', '{:.2f}')} s per run; the daemon was runnable but waiting "
        f"for a CPU {_col(runs, 'runqueue_ms_per_s')} ms of every second (schedstat).",
    ]
    cycles = sizes.w4_cycles
    return rows, [
        Target(
            "W4 PAUSE reply p99 ≤ 5 ms", [r["pause_reply_p99_ms"] for r in runs], lambda v: v <= 5
        ),
        Target(
            "W4 PAUSE reply minus every process stopped ≤ 1 ms (p50)",
            [r["reply_after_stop_p50_ms"] for r in runs],
            lambda v: v <= 1,
        ),
        Target(
            f"W4 cycles with every process stopped at the reply (of {cycles})",
            [r["stopped_at_reply"] for r in runs],
            lambda v: v == cycles,
            "{:.0f}",
        ),
    ]


def w8_section(runs: Runs, sizes: Sizes) -> Section:
    def row(mode: str, title: str) -> str:
        if mode == "pipe":
            over = cpu = wait = ""
        else:
            over = _col(runs, f"{mode}_over_pipe_p50_ms", "{:.2f}")
            cpu = _col(runs, f"{mode}_daemon_cpu_ms_per_line", "{:.3f}")
            wait = _col(runs, f"{mode}_daemon_wait_ms_per_line", "{:.3f}")
        return (
            f"| {title} | {_col(runs, f'{mode}_p50_ms', '{:.2f}')} | "
            f"{_col(runs, f'{mode}_p99_ms', '{:.2f}')} | {over} | {cpu} | {wait} |"
        )

    rows = [
        f"### W8 live latency — a child writes a line every {sizes.w8_period * 1000:.0f} ms "
        f"({sizes.w8_lines} lines)",
        "",
        "Each line carries the child's CLOCK_MONOTONIC just before its write(); the reader notes "
        "the same clock when a read hands it the line. The pipe reader is the same client "
        "process reading the child's stdout itself, just before.",
        "",
        "| reader | p50 ms | p99 ms | p50 over the pipe's, ms | daemon CPU ms per line | "
        "daemon waiting for a CPU, ms per line |",
        "|---|---|---|---|---|---|",
        row("pipe", "the pipe itself (blocking read)"),
        row("binary", "**daemon → client, binary frames**"),
        row("json", "daemon → client, JSON text frames"),
    ]
    return rows, [
        Target(
            "W8 p50 ≤ the pipe's p50 + 0.5 ms (binary frames)",
            [r["binary_over_pipe_p50_ms"] for r in runs],
            lambda v: v <= 0.5,
        )
    ]
