"""The benchmark's W2 at a tiny size, end to end: a smoke test of the bench, not of speed.

Nothing here is timed: it checks only that the benchmark runs and that its integrity counts
are zero (every line of `seq` arrived once, in order).
"""

from __future__ import annotations

import attrs

from bench.measure import QUICK, w2_integrity


def test_quick_w2_integrity_counts_are_zero() -> None:
    figures = w2_integrity(attrs.evolve(QUICK, w2_lines=5000))
    assert figures["exact"] is True
    assert (figures["lost"], figures["duplicated"], figures["reordered"]) == (0, 0, 0)
    assert figures["malformed"] == 0
