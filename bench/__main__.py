"""`python -m bench [--quick] [--runs N] [--only W1,W2] [--output PATH]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.clients import ROOT
from bench.cost import ALIASES
from bench.measure import QUICK, WORKLOADS, Sizes
from bench.report import write_report


def loadavg() -> float:
    """The 1-minute load average: how busy the box was besides the benchmark itself."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke check")
    parser.add_argument("--runs", type=int, help="runs per workload (default 3; --quick 1)")
    parser.add_argument(
        "--only", help=f"comma-separated workloads, e.g. W1,W8 (of {', '.join(WORKLOADS)})"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="report path (default docs/benchmarks.md; --quick prints to stdout instead)",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    runs = args.runs or (1 if args.quick else 3)
    names = args.only.split(",") if args.only else list(WORKLOADS)
    names = list(dict.fromkeys(ALIASES.get(name, name) for name in names))  # W10 is W9's
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    results: dict[str, list[dict[str, object]]] = {}
    started = time.monotonic()
    load: dict[str, tuple[float, float]] = {}
    for name in names:
        results[name] = []
        before = loadavg()
        for i in range(runs):
            figures = WORKLOADS[name](sizes)
            results[name].append(figures)
            print(f"{name} run {i + 1}/{runs}: {figures}", file=sys.stderr, flush=True)
        load[name] = (before, loadavg())
    elapsed = time.monotonic() - started
    output = args.output or (None if args.quick else ROOT / "docs" / "benchmarks.md")
    text = write_report(results, sizes, runs, elapsed, load, quick=args.quick)
    if output is None:
        print(text)
    else:
        output.write_text(text)
        print(f"wrote {output} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
