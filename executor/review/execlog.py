"""The Usage Function Execution Log: what each usage demo did, as Markdown for a review.

Pure: executions in, text out. The text goes under `## Usage Function Execution Log` as is,
so it opens no `##` section of its own, and output is fenced so nothing in it is structure.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from cc_executor.executor.review.feedback import MARKER
from cc_executor.executor.review.markdown import fenced
from cc_executor.executor.review.runs import Execution

DEMOS: tuple[tuple[str, str], ...] = (
    ("protocol", "cc_executor.protocol.usage"),
    ("supervision", "cc_executor.supervision.usage"),
    ("executor", "cc_executor.executor.usage"),
)
EXCERPT_LINES = 20


def demo_argv(module: str) -> tuple[str, ...]:
    return (sys.executable, "-m", module)


def marker_of(component: str, execution: Execution) -> str | None:
    """The demo's run marker, when its stdout has one for `component`."""
    for match in MARKER.finditer(execution.stdout.decode(errors="replace")):
        if match["component"] == component:
            return match.group(0)
    return None


def demo_passed(component: str, execution: Execution) -> bool:
    return execution.ok and marker_of(component, execution) is not None


def _display(argv: Sequence[str]) -> str:
    shown = ["python" if i == 0 and a == sys.executable else a for i, a in enumerate(argv)]
    return shlex.join(shown)


def _excerpt(data: bytes) -> str:
    lines = data.decode(errors="replace").splitlines()
    cut = len(lines) - EXCERPT_LINES
    kept = lines[-EXCERPT_LINES:] if cut > 0 else lines
    head = [f"[... {cut} earlier lines]"] if cut > 0 else []
    return "\n".join(head + kept)


def render(results: Sequence[tuple[str, Execution]], *, url: str, version: str, at: str) -> str:
    """The execution log of `(component, execution)` pairs."""
    passed = sum(demo_passed(c, e) for c, e in results)
    out = [
        f"Executed by `ccx review run` at {at} through the daemon at {url} "
        f"(cc-executor {version}): {passed}/{len(results)} usage demos passed.",
        "",
        "| Component | Command | Run | Exit | Outcome | Duration | Marker |",
        "|---|---|---|---|---|---|---|",
    ]
    for component, e in results:
        marker = marker_of(component, e)
        out.append(
            f"| {component} | `{_display(e.argv)}` | `{e.run}` | {e.exit_code} | {e.outcome} "
            f"| {e.duration:.2f} s | {f'`{marker}`' if marker else 'MISSING'} |"
        )
    for component, e in results:
        out += ["", f"### {component}: `{_display(e.argv)}`", ""]
        out.append(
            f"Run `{e.run}` started {e.started_at}, {e.outcome}, exit code {e.exit_code}, "
            f"{e.duration:.2f} s, {len(e.stdout)} bytes of stdout, {len(e.stderr)} of stderr."
        )
        for name, data in (("stdout", e.stdout), ("stderr", e.stderr)):
            if data:
                out += ["", f"{name} (last {EXCERPT_LINES} lines):", "", fenced(_excerpt(data))]
    return "\n".join(out) + "\n"
