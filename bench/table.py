"""The pieces of a report table: a figure as median [min-max] over runs, and a target."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import attrs

from bench.stats import spread

Runs = list[dict[str, Any]]


def _col(runs: Runs, key: str, fmt: str = "{:.1f}") -> str:
    return spread([float(run[key]) for run in runs], fmt)


def _ratio(runs: Runs, key: str, base: str) -> str:
    return spread([float(run[key]) / float(run[base]) for run in runs], "{:.4f}")


def _all(runs: Runs, key: str) -> str:
    values = [run[key] for run in runs]
    return " / ".join(str(v) for v in values)


@attrs.frozen
class Target:
    """A target of the issue, judged on the median over the runs; each run counted too."""

    text: str
    values: list[float]
    ok: Callable[[float], bool]
    fmt: str = "{:.2f}"

    def row(self) -> str:
        median = statistics.median(self.values)
        passed = sum(1 for value in self.values if self.ok(value))
        verdict = "met" if self.ok(median) else "**missed**"
        values = ", ".join(self.fmt.format(value) for value in self.values)
        return (
            f"| {self.text} | {self.fmt.format(median)} | {values} | {verdict} "
            f"({passed} of {len(self.values)} runs) |"
        )
