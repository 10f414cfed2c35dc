"""docs/benchmarks.md: the machine, the date, the commit, every figure as median [min-max]."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from importlib import metadata
from typing import Any

import attrs

from bench.measure import ROOT, Sizes
from bench.stats import spread

Runs = list[dict[str, Any]]
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
    )
    return commit + (" (with uncommitted changes to the measured code)" if dirty else "")


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


def _w1(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    rows = [
        f"### W1 firehose — `yes <63 chars> | head -c {sizes.w1_bytes}`",
        "",
        "| | MB/s | ratio to raw pipe | CPU s per 100 MB | peak RSS MB |",
        "|---|---|---|---|---|",
        f"| raw pipe (1 MiB reads) | {_col(runs, 'raw_mbps', '{:.0f}')} | 1 | | |",
        f"| Python, 64 KiB reads | {_col(runs, 'py64_mbps', '{:.0f}')} | "
        f"{_col(runs, 'py64_ratio', '{:.2f}')} | | |",
        f"| **daemon → client** | **{_col(runs, 'mbps', '{:.0f}')}** | "
        f"{_col(runs, 'ratio', '{:.3f}')} | daemon {_col(runs, 'daemon_cpu_per_100mb', '{:.2f}')}"
        f"; client {_col(runs, 'client_cpu_per_100mb', '{:.2f}')} | "
        f"{_col(runs, 'peak_rss_mb')} |",
        f"| daemon → client on `/ws/mcp`, the original's framing (one frame per line; "
        f"{sizes.w1_original_bytes} bytes) | {_col(runs, 'original_mbps', '{:.2f}')} | "
        f"{_ratio(runs, 'original_mbps', 'raw_mbps')} | "
        f"daemon {_col(runs, 'original_daemon_cpu_per_100mb', '{:.1f}')}"
        f"; client {_col(runs, 'original_client_cpu_per_100mb', '{:.1f}')} | "
        f"{_col(runs, 'original_peak_rss_mb')} |",
        "",
        f"Every byte arrived, in order, in every run: {_all(runs, 'bytes_ok')} on `/`, "
        f"{_all(runs, 'original_bytes_ok')} on `/ws/mcp`. Frames per run: "
        f"{_all(runs, 'frames')} on `/`, {_all(runs, 'original_frames')} on `/ws/mcp`.",
    ]
    return rows, [
        Target(
            "W1 ≥ 300 MB/s at the client", [r["mbps"] for r in runs], lambda v: v >= 300, "{:.0f}"
        )
    ]


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


def _w4(runs: Runs, sizes: Sizes) -> tuple[list[str], list[Target]]:
    def pair(key: str, fmt: str = "{:.2f}") -> str:
        return f"{_col(runs, key + '_p50_ms', fmt)} | {_col(runs, key + '_p99_ms', fmt)}"

    rows = [
        f"### W4 control under load — {sizes.w4_cycles} PAUSE/RESUME cycles during W1's flood",
        "",
        "| latency (ms) | p50 | p99 |",
        "|---|---|---|",
        f"| PAUSE request → reply | {pair('pause_reply')} |",
        f"| PAUSE request → every process in state T | {pair('pause_stopped')} |",
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
            f"W4 cycles with every process stopped at the reply (of {cycles})",
            [r["stopped_at_reply"] for r in runs],
            lambda v: v == cycles,
            "{:.0f}",
        ),
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
    "W1": _w1,
    "W2": _w2,
    "W3": _w3,
    "W4": _w4,
    "W6": _w6,
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
