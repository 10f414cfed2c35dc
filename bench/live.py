"""The live path's workloads: W1 bytes (JSON text, binary frames, the original's framing) and
W8 latency, each beside its floor measured in the same run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bench import procfs
from bench.clients import finish_client, run_client, start_spec
from bench.daemon import Daemon, running_daemon
from bench.pipe import read_pipe
from bench.relay import relay_pipe
from bench.stats import percentile
from bench.streams import ORIGINAL_PATH, firehose_argv

if TYPE_CHECKING:
    from bench.measure import Sizes

LINE = "x" * 63  # W1: 64-byte lines
MB = 1e6
# W1's variants through one daemon, after the raw pipe: (figure prefix, path, binary frames).
W1_VARIANTS = (("", "/", False), ("binary_", "/", True), ("original_", ORIGINAL_PATH, False))
# W1's last two rows: --stream-buffer and CCX_BINARY_STREAM_BUFFER (the defaults: 128 KiB for
# JSON clients' runs, 256 KiB for binary clients').
W1_BIG_READS = 512 * 1024


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the daemons started meanwhile (it inherits ours)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _w1_variant(daemon: Daemon, total: int, path: str, binary: bool) -> dict[str, Any]:
    procfs.reset_peak_rss(daemon.pid)
    cpu = procfs.cpu_seconds(daemon.pid)
    client = run_client(daemon, "W1", total_bytes=total, line=LINE, path=path, binary=binary)
    daemon_cpu = procfs.cpu_seconds(daemon.pid) - cpu
    per_100mb = 100 * MB / max(1, client["bytes"])
    return {
        "mbps": client["mb_per_s"],
        "bytes_ok": client["bytes"] == total and client["seq_errors"] == 0,
        "frames": client["frames"],
        "daemon_cpu": daemon_cpu,
        "client_cpu": client["client_cpu"],
        "daemon_cpu_per_100mb": daemon_cpu * per_100mb,
        "client_cpu_per_100mb": client["client_cpu"] * per_100mb,
        "peak_rss_mb": procfs.peak_rss_kib(daemon.pid) / 1024,
    }


def w1_firehose(sizes: Sizes) -> dict[str, Any]:
    argv = firehose_argv(sizes.w1_bytes, LINE)
    raw = read_pipe(argv, 1024 * 1024)
    py64 = read_pipe(argv, 64 * 1024)
    relay = relay_pipe(argv, 128 * 1024)
    raw_mbps = raw.bytes / raw.seconds / MB
    figures: dict[str, Any] = {
        "raw_mbps": raw_mbps,
        "py64_mbps": py64.bytes / py64.seconds / MB,
        "py64_ratio": py64.bytes / py64.seconds / MB / raw_mbps,
        "relay_mbps": relay.bytes / relay.seconds / MB,
        "relay_ratio": relay.bytes / relay.seconds / MB / raw_mbps,
        "relay_cpu_per_100mb": relay.reader_cpu * 100 * MB / max(1, relay.bytes),
    }
    with running_daemon() as daemon:
        for prefix, path, binary in W1_VARIANTS:
            # The original's framing (a frame per 64-byte line) is two orders of magnitude
            # slower: it moves less, to stay within the client's bound.
            total = sizes.w1_original_bytes if path == ORIGINAL_PATH else sizes.w1_bytes
            variant = _w1_variant(daemon, total, path, binary)
            variant["ratio"] = variant["mbps"] / raw_mbps
            figures.update({prefix + key: value for key, value in variant.items()})
    # W11's knobs: bigger reads (more memory per stalled stream) for fewer, bigger frames.
    with (
        _environment(CCX_BINARY_STREAM_BUFFER=str(W1_BIG_READS)),
        running_daemon("--stream-buffer", str(W1_BIG_READS)) as daemon,
    ):
        for prefix, binary in (("big_binary_", True), ("big_", False)):
            variant = _w1_variant(daemon, sizes.w1_bytes, "/", binary)
            variant["ratio"] = variant["mbps"] / raw_mbps
            figures.update({prefix + key: value for key, value in variant.items()})
    return figures


def w8_latency(sizes: Sizes) -> dict[str, Any]:
    """A child writes a line every w8_period: write-to-read latency on the pipe, then through
    a daemon with binary frames and with JSON text (one daemon, one run each)."""
    args = {"count": sizes.w8_lines, "period": sizes.w8_period}
    figures: dict[str, Any] = {}
    pipe = finish_client(start_spec("W8", mode="pipe", **args))
    readers: dict[str, list[float]] = {"pipe": pipe["latencies"]}
    with running_daemon() as daemon:
        for mode in ("binary", "json"):
            cpu = procfs.cpu_seconds(daemon.pid)
            waited = procfs.runqueue_seconds(daemon.pid)
            result = run_client(daemon, "W8", mode=mode, **args)
            readers[mode] = result["latencies"]
            per_line = 1000 / sizes.w8_lines
            figures[f"{mode}_daemon_cpu_ms_per_line"] = (
                procfs.cpu_seconds(daemon.pid) - cpu
            ) * per_line
            # How long the daemon was ready to run but had no CPU, per line (schedstat).
            figures[f"{mode}_daemon_wait_ms_per_line"] = (
                procfs.runqueue_seconds(daemon.pid) - waited
            ) * per_line
    for mode, latencies in readers.items():
        for q in (50, 99):
            figures[f"{mode}_p{q}_ms"] = percentile(latencies, q) * 1000
    for mode in ("binary", "json"):
        figures[f"{mode}_over_pipe_p50_ms"] = figures[f"{mode}_p50_ms"] - figures["pipe_p50_ms"]
    return figures
