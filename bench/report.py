"""docs/benchmarks.md: the machine, the date, the commit, every figure as median [min-max]."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Callable
from importlib import metadata

from bench.clients import ROOT
from bench.live_report import w1_section, w4_section, w8_section
from bench.measure import Sizes
from bench.stats import spread
from bench.table import Runs as Runs
from bench.table import Target as Target
from bench.table import _all as _all
from bench.table import _col as _col

ANALYSIS = ROOT / "bench" / "analysis.md"


def _machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("trio", "trio-websocket", "wsproto", "orjson")
    )
    return (
        f"{model}, {os.cpu_count()} cores, {mem_kib / 2**20:.1f} GiB RAM; "
        f"Linux {platform.release()}; Python {platform.python_version()}; {versions}"
    )


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "bench",
        "protocol",
        "supervision",
        "executor",
        ":(exclude)bench/analysis.md",  # the analysis is prose, not measured code
    )
    return commit + (" (with uncommitted changes to the measured code)" if dirty else "")


def _w2(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    rows = [
        f"### W2 integrity — `seq 1 {sizes.w2_lines}`",
        "",
        "| | lines/s | ratio to raw pipe | lost | duplicated | reordered | daemon CPU s | "
        "client CPU s |",
        "|---|---|---|---|---|---|---|---|",
        f"| raw pipe | {_col(runs, 'raw_lps', '{:,.0f}')} | 1 | | | | | |",
        f"| **daemon → client** | **{_col(runs, 'lps', '{:,.0f}')}** | "
        f"{_col(runs, 'ratio', '{:.3f}')} | {_all(runs, 'lost')} | "
        f"{_all(runs, 'duplicated')} | {_all(runs, 'reordered')} | "
        f"{_col(runs, 'daemon_cpu', '{:.2f}')} | {_col(runs, 'client_cpu', '{:.2f}')} |",
        "",
        "The client compares the whole stream with the expected bytes (and counts lost, "
        "duplicated and reordered lines only if they differ); it also checks that sequence "
        f"numbers are contiguous and nothing came on stderr: malformed/seq errors "
        f"{_all(runs, 'malformed')}; exact: {_all(runs, 'exact')}.",
    ]
    return rows, [
        Target("W2 ≥ 2,000,000 lines/s", [r["lps"] for r in runs], lambda v: v >= 2e6, "{:,.0f}"),
        Target(
            "W2 exact: lost + duplicated + reordered + malformed",
            [r["lost"] + r["duplicated"] + r["reordered"] + r["malformed"] for r in runs],
            lambda v: v == 0,
            "{:.0f}",
        ),
    ]


def _w3(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    rows = [
        f"### W3 slow client — the child floods for {sizes.w3_seconds:.0f} s, the client "
        f"drains ~{sizes.w3_rate / 1e6:.0f} MB/s",
        "",
        "| daemon RSS growth MB (from idle) | growth after the first 2 s | idle RSS MB | "
        "client drain MB/s | produced MB | delivered MB | dropped bytes |",
        "|---|---|---|---|---|---|---|",
        f"| {_col(runs, 'rss_growth_mb', '{:.2f}')} | "
        f"{_col(runs, 'rss_growth_after_2s_mb', '{:.2f}')} | {_col(runs, 'baseline_rss_mb')} | "
        f"{_col(runs, 'slow_rate_mbps', '{:.2f}')} | {_col(runs, 'produced_mb', '{:.2f}')} | "
        f"{_col(runs, 'delivered_mb', '{:.2f}')} | {_all(runs, 'dropped')} |",
        "",
        f"RSS sampled every 0.2 s from /proc ({_all(runs, 'samples')} samples). The child counts "
        "what its write() calls accepted; after the flood the client drains at full speed.",
    ]
    return rows, [
        Target("W3 daemon RSS growth ≤ 4 MB", [r["rss_growth_mb"] for r in runs], lambda v: v <= 4),
        Target("W3 bytes dropped = 0", [r["dropped"] for r in runs], lambda v: v == 0, "{:.0f}"),
    ]


def _w6(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    ms = "{:.0f}"
    rows = [
        f"### W6 the command line — `ccx run -- true` and `ccx ps`, whole processes, "
        f"median of {sizes.w6_calls} calls each, beside a raw trio-websocket client",
        "",
        "| exchange | ccx ms | raw client ms | ratio |",
        "|---|---|---|---|",
    ]
    for name, shown in (("run", "`ccx run -- true`"), ("ps", "`ccx ps`")):
        ccx = [r[f"{name}_ccx_s"] * 1000 for r in runs]
        raw = [r[f"{name}_raw_s"] * 1000 for r in runs]
        rows.append(
            f"| {shown} | {spread(ccx, ms)} | {spread(raw, ms)} | "
            f"{_col(runs, f'{name}_ratio', '{:.2f}')} |"
        )
    return rows, [
        Target(
            f"W6 {name} within 1.2x of the raw client",
            [r[f"{name}_ratio"] for r in runs],
            lambda v: v <= 1.2,
        )
        for name in ("run", "ps")
    ]


SECTIONS: dict[str, Callable[[Runs, Sizes], tuple[list[str], list[Target]]]] = {
    "W1": w1_section,
    "W2": _w2,
    "W3": _w3,
    "W4": w4_section,
    "W6": _w6,
    "W8": w8_section,
}


# The per-run cost, memory and state-directory sections (they use the helpers above).
from bench.report_cost import SECTIONS as _COST  # noqa: E402

SECTIONS.update(_COST)
from bench.claude_turn import SECTIONS as _CLAUDE  # noqa: E402

SECTIONS.update(_CLAUDE)
SECTIONS = dict(sorted(SECTIONS.items(), key=lambda item: int(item[0][1:])))


def write_report(
    results: dict[str, Runs],
    sizes: Sizes,
    runs: int,
    elapsed: float,
    load: dict[str, tuple[float, float]],
    *,
    quick: bool,
) -> str:
    """The whole report as Markdown."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body: list[str] = []
    targets: list[Target] = []
    for name, section in SECTIONS.items():
        if name in results:
            rows, checks = section(results[name], sizes)
            body += [*rows, ""]
            targets += checks
    lines = [
        "# Benchmarks",
        "",
        "Written by `./dev bench` (`python -m bench`)"
        + (" in --quick mode" if quick else "")
        + "; do not edit by hand — the analysis comes from `bench/analysis.md`.",
        "",
        f"- Machine: {_machine()}",
        f"- Date: {now}",
        f"- Commit: {_commit()}",
        f"- Runs: {runs} per workload, each figure median [min\N{EN DASH}max] over the runs "
        f"(whole command: {elapsed:.0f} s)",
        "- Every run starts a fresh daemon (`python -m cc_executor.executor serve --port 0`, "
        "default settings, loopback); the raw pipe is measured in the same run, just before. "
        "The client is a separate Python process on a raw socket (bench/wsclient.py): its CPU "
        "time is given beside the daemon's.",
        "- Load average (1 min) before → after each workload, the benchmark's own load "
        "included; the box is shared, and W4 in particular moves with it: "
        + ", ".join(f"{name} {a:.2f} → {b:.2f}" for name, (a, b) in load.items()),
        "",
        "## Targets",
        "",
        "Judged on the median over the runs; how many single runs met it is counted too.",
        "",
        "| target | median | each run | result |",
        "|---|---|---|---|",
        *[target.row() for target in targets],
        "",
        "## Results",
        "",
        *body,
    ]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(lines)
