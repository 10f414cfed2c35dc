"""One run of each workload: the raw pipe, then a fresh daemon measured from /proc while the
client process drives it.  Each function returns the run's figures as a flat dict."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import attrs

from bench import procfs
from bench.cli import compare
from bench.clients import CLIENT_BOUND, finish_client, start_client
from bench.clients import ROOT as ROOT
from bench.clients import run_client as run_client
from bench.daemon import running_daemon
from bench.live import LINE, MB, w1_firehose, w8_latency
from bench.pipe import read_pipe
from bench.stats import percentile

RSS_SAMPLE = 0.2  # seconds between RSS samples in W3


@attrs.frozen
class Sizes:
    """How big each workload is; --quick shrinks them."""

    w1_bytes: int = 200_000_000
    # W1 on /ws/mcp (the original's framing: a frame per 64-byte line) is two orders of
    # magnitude slower, so it moves less, to stay within the client's bound.
    w1_original_bytes: int = 10_000_000
    w2_lines: int = 2_000_000
    w3_seconds: float = 20.0
    w3_rate: float = 1e6
    w4_cycles: int = 20
    w5_connections: int = 1000
    w5_lines: int = 1000
    w6_calls: int = 10
    w8_lines: int = 200
    w8_period: float = 0.02
    w9_bytes: int = 200_000_000
    w11_streams: int = 200
    w12_runs: int = 10_000
    w13_turns: int = 20


QUICK = Sizes(
    w1_bytes=20_000_000,
    w1_original_bytes=1_000_000,
    w2_lines=200_000,
    w3_seconds=3.0,
    w4_cycles=5,
    w5_connections=100,
    w6_calls=3,
    w8_lines=50,
    w9_bytes=20_000_000,
    w11_streams=50,
    w12_runs=1_000,
    w13_turns=3,
)


def w2_integrity(sizes: Sizes) -> dict[str, Any]:
    raw = read_pipe(["seq", "1", str(sizes.w2_lines)], 1024 * 1024)
    raw_lps = sizes.w2_lines / raw.seconds
    with running_daemon() as daemon:
        cpu = procfs.cpu_seconds(daemon.pid)
        client = run_client(daemon, "W2", count=sizes.w2_lines)
        daemon_cpu = procfs.cpu_seconds(daemon.pid) - cpu
    return {
        "raw_lps": raw_lps,
        "lps": client["lines_per_s"],
        "ratio": client["lines_per_s"] / raw_lps,
        "lost": client["lost"],
        "duplicated": client["duplicated"],
        "reordered": client["reordered"],
        "malformed": client["malformed"] + client["seq_errors"] + client["stderr_bytes"],
        "exact": client["exact"],
        "daemon_cpu": daemon_cpu,
        "client_cpu": client["client_cpu"],
    }


def w3_slow_client(sizes: Sizes) -> dict[str, Any]:
    with running_daemon() as daemon, tempfile.TemporaryDirectory() as tmp:
        baseline = procfs.rss_kib(daemon.pid)
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        process = start_client(
            daemon,
            "W3",
            flood_seconds=sizes.w3_seconds,
            rate=sizes.w3_rate,
            tally=os.path.join(tmp, "produced"),
        )
        # Bounded: the client has its own bound, and CLIENT_BOUND ends the wait regardless.
        while process.poll() is None and time.monotonic() - started < CLIENT_BOUND:
            samples.append((time.monotonic() - started, procfs.rss_kib(daemon.pid)))
            time.sleep(RSS_SAMPLE)
        client = finish_client(process)
    flood = [rss for t, rss in samples if t <= sizes.w3_seconds]
    warm = [rss for t, rss in samples if 2.0 <= t <= sizes.w3_seconds] or flood
    return {
        "rss_growth_mb": (max(rss for _, rss in samples) - baseline) / 1024,
        "rss_growth_after_2s_mb": (max(warm) - warm[0]) / 1024,
        "baseline_rss_mb": baseline / 1024,
        "samples": len(samples),
        "produced_mb": client["produced"] / MB,
        "delivered_mb": client["delivered"] / MB,
        "dropped": client["dropped"],
        "slow_rate_mbps": client["slow_rate"] / MB,
        "client_cpu": client["client_cpu"],
    }


def w4_control(sizes: Sizes) -> dict[str, Any]:
    with running_daemon() as daemon:
        cpu = procfs.cpu_seconds(daemon.pid)
        waited = procfs.runqueue_seconds(daemon.pid)
        started = time.monotonic()
        client = run_client(daemon, "W4", cycles=sizes.w4_cycles, line=LINE)
        daemon_cpu = procfs.cpu_seconds(daemon.pid) - cpu
        waited = procfs.runqueue_seconds(daemon.pid) - waited
        elapsed = time.monotonic() - started
    ms = 1000.0
    figures: dict[str, Any] = {
        "cycles": sizes.w4_cycles,
        "members": client["members"],
        "stopped_at_reply": client["stopped_at_reply"],
        "cancel_ms": client["cancel_completed"] * ms,
        # Of each second of W4, how long the daemon was ready to run but had no CPU.
        "runqueue_ms_per_s": waited / elapsed * ms,
        "daemon_cpu": daemon_cpu,
        "client_cpu": client["client_cpu"],
    }
    pairs = zip(client["pause_reply"], client["pause_stopped"], strict=True)
    client["reply_after_stop"] = [reply - stopped for reply, stopped in pairs]
    for key in (
        "pause_reply",
        "pause_stopped",
        "reply_after_stop",
        "resume_reply",
        "resume_first_output",
    ):
        figures[f"{key}_p50_ms"] = percentile(client[key], 50) * ms
        figures[f"{key}_p99_ms"] = percentile(client[key], 99) * ms
    after = client["bytes_after_pause_reply"]
    figures["after_pause_p50_kb"] = percentile(after, 50) / 1e3
    figures["after_pause_p99_kb"] = percentile(after, 99) / 1e3
    return figures


def w6_cli(sizes: Sizes) -> dict[str, Any]:
    with running_daemon() as daemon:
        return {"calls": sizes.w6_calls, **compare(daemon.port, sizes.w6_calls)}


WORKLOADS = {
    "W1": w1_firehose,
    "W2": w2_integrity,
    "W3": w3_slow_client,
    "W4": w4_control,
    "W6": w6_cli,
    "W8": w8_latency,
}


# The per-run cost, memory and state-directory workloads live in their own modules (they use
# the helpers above, so they are imported last).
from bench.cost import WORKLOADS as _COST  # noqa: E402

WORKLOADS.update(_COST)
from bench.claude_turn import WORKLOADS as _CLAUDE  # noqa: E402

WORKLOADS.update(_CLAUDE)
WORKLOADS = dict(sorted(WORKLOADS.items(), key=lambda item: int(item[0][1:])))
