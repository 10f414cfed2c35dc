"""The benchmark's W2 at a tiny size, end to end: a smoke test of the bench, not of speed.

Nothing here is timed: it checks only that the benchmark runs and that its integrity counts
are zero (every line of `seq` arrived once, in order).
"""

from __future__ import annotations

import attrs

from bench.live import w1_firehose, w8_latency
from bench.measure import QUICK, w2_integrity


def test_quick_w2_integrity_counts_are_zero() -> None:
    figures = w2_integrity(attrs.evolve(QUICK, w2_lines=5000))
    assert figures["exact"] is True
    assert (figures["lost"], figures["duplicated"], figures["reordered"]) == (0, 0, 0)
    assert figures["malformed"] == 0


def test_quick_w1_every_framing_delivers_every_byte() -> None:
    sizes = attrs.evolve(QUICK, w1_bytes=2_000_000, w1_original_bytes=64_000)
    figures = w1_firehose(sizes)
    assert (figures["bytes_ok"], figures["binary_bytes_ok"], figures["original_bytes_ok"]) == (
        True,
        True,
        True,
    )
    assert figures["original_frames"] == 64_000 // 64  # a frame per line on /ws/mcp


def test_quick_w8_every_line_is_timed_by_every_reader() -> None:
    figures = w8_latency(attrs.evolve(QUICK, w8_lines=10, w8_period=0.005))
    for mode in ("pipe", "binary", "json"):  # each line's own timestamp was read back
        assert 0 < figures[f"{mode}_p50_ms"] <= figures[f"{mode}_p99_ms"]
