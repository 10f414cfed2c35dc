"""Summaries: median [min-max] over runs, and percentiles within a run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank: p99 of 20 samples is the largest."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """`median [min\N{EN DASH}max]` of the runs' values."""
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(values))}\N{EN DASH}{fmt.format(max(values))}]"
