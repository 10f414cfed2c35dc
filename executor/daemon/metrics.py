"""Daemon metrics in the Prometheus text exposition format (version 0.0.4).

Counters only go up; gauges are read from the daemon's state when scraped, so they cannot
drift from it.  Rendering is pure: the daemon hands its numbers in, the text comes out.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping

import attrs

# Control latency buckets in seconds: PAUSE/RESUME answer in about a millisecond, CANCEL may
# wait out its SIGTERM grace.
CONTROL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 5.0, 10.0)


@attrs.define
class Histogram:
    """Cumulative buckets, sum and count, per label value."""

    buckets: tuple[float, ...]
    counts: dict[str, list[int]] = attrs.field(factory=dict)
    sums: dict[str, float] = attrs.field(factory=dict)

    def observe(self, label: str, value: float) -> None:
        counts = self.counts.setdefault(label, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[label] = self.sums.get(label, 0.0) + value


@attrs.define
class Metrics:
    """What the daemon counts as it goes."""

    runs_started: int = 0
    runs_completed: Counter[str] = attrs.field(factory=Counter)  # by outcome
    stream_bytes: Counter[str] = attrs.field(factory=Counter)  # by stream
    backpressure_stalls: int = 0
    refusals: Counter[str] = attrs.field(factory=Counter)  # by reason
    # Failures caught by an error boundary, by where ("connection", "run"): bugs, counted.
    internal_errors: Counter[str] = attrs.field(factory=Counter)
    control_seconds: Histogram = attrs.field(factory=lambda: Histogram(CONTROL_BUCKETS))
    connections_lost: Counter[str] = attrs.field(factory=Counter)  # by stage
    accept_errors: Counter[str] = attrs.field(factory=Counter)  # by errno name

    def refused(self, reason: str) -> None:
        self.refusals[reason] += 1

    def internal_error(self, where: str) -> None:
        self.internal_errors[where] += 1

    def connection_lost(self, stage: str) -> None:
        self.connections_lost[stage] += 1

    def accept_failed(self, errno_name: str) -> None:
        self.accept_errors[errno_name] += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _labelled(name: str, label: str, values: Mapping[str, float]) -> list[str]:
    return [
        f'{name}{{{label}="{_escape(key)}"}} {value:g}' for key, value in sorted(values.items())
    ]


def _counter_by(name: str, help_text: str, label: str, values: Mapping[str, float]) -> list[str]:
    """A counter family with one sample per label value."""
    return _family(name, "counter", help_text, _labelled(name, label, values))


def render(
    metrics: Metrics,
    *,
    connections: int,
    runs_by_state: Mapping[str, int],
    draining: bool,
    log_lines_lost: int = 0,
) -> str:
    """The /metrics page."""
    lines: list[str] = []
    lines += _family(
        "ccx_connections", "gauge", "Open WebSocket sessions.", [f"ccx_connections {connections}"]
    )
    lines += _family(
        "ccx_runs", "gauge", "Live runs by state.", _labelled("ccx_runs", "state", runs_by_state)
    )
    lines += _family(
        "ccx_runs_started_total",
        "counter",
        "Runs started.",
        [f"ccx_runs_started_total {metrics.runs_started}"],
    )
    lines += _family(
        "ccx_runs_completed_total",
        "counter",
        "Runs completed, by outcome.",
        _labelled("ccx_runs_completed_total", "outcome", metrics.runs_completed),
    )
    lines += _family(
        "ccx_stream_bytes_total",
        "counter",
        "Bytes read from children's stdout and stderr (of completed runs).",
        _labelled("ccx_stream_bytes_total", "stream", metrics.stream_bytes),
    )
    lines += _family(
        "ccx_backpressure_stalls_total",
        "counter",
        "Times a run's pipe reader waited for its output pump, which waited for the client.",
        [f"ccx_backpressure_stalls_total {metrics.backpressure_stalls}"],
    )
    lines += _family(
        "ccx_refusals_total",
        "counter",
        "Requests and connections refused, by reason.",
        _labelled("ccx_refusals_total", "reason", metrics.refusals),
    )
    lines += _family(
        "ccx_internal_errors_total",
        "counter",
        "Failures caught by an error boundary (a connection closed with 1011, a run failed).",
        _labelled("ccx_internal_errors_total", "where", metrics.internal_errors),
    )
    histogram = metrics.control_seconds
    samples = []
    for label, counts in sorted(histogram.counts.items()):
        cumulative = 0
        for bound, count in zip((*histogram.buckets, float("inf")), counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            samples.append(f'ccx_control_seconds_bucket{{type="{label}",le="{le}"}} {cumulative}')
        samples.append(f'ccx_control_seconds_sum{{type="{label}"}} {histogram.sums[label]:g}')
        samples.append(f'ccx_control_seconds_count{{type="{label}"}} {cumulative}')
    lines += _family(
        "ccx_control_seconds",
        "histogram",
        "Time from a control request to its reply, by type.",
        samples,
    )
    lines += _counter_by(
        "ccx_connections_lost_total",
        "Connections whose peer went away (reset, hang-up, silence) before a close, by stage.",
        "stage",
        metrics.connections_lost,
    )
    lines += _counter_by(
        "ccx_accept_errors_total",
        "Failed accept() calls (accepting pauses, then retries), by errno.",
        "errno",
        metrics.accept_errors,
    )
    lines += _family(
        "ccx_log_lines_lost_total",
        "counter",
        "Log lines stderr could not take (its reader gone or stalled, its disk full).",
        [f"ccx_log_lines_lost_total {log_lines_lost}"],
    )
    lines += _family(
        "ccx_draining", "gauge", "1 while the daemon drains.", [f"ccx_draining {int(draining)}"]
    )
    return "\n".join(lines) + "\n"
