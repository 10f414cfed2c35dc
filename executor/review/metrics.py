"""A prompt's derived fields: the metric lines and the Execution Log, written and checked.

`apply_record` writes them from the record (see `chain` for why they are derived, never
typed); `check_metrics` recomputes them and checks the `## Task Metrics & History` section
around them — its metric lines, its Evolution History table, its Execution Log. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cc_executor.executor.review.chain import SHORT, Entry
from cc_executor.executor.review.markdown import (
    Line,
    Section,
    find_section,
    sections,
    split_lines,
    tables,
)
from cc_executor.executor.review.problems import Problem

METRICS_SECTION = "Task Metrics & History"
EVOLUTION_HEADER = ("Version", "Date", "Change", "Reason", "Result")
LOG_HEADER = ("#", "Date (UTC)", "Commands", "Result", "Digest")
LOG_NOTE = "<!-- written by `ccx prompts record` from the record; never edit by hand -->"
METRIC = re.compile(r"^- \*\*(?P<key>[^*]+)\*\*: (?P<value>.*)$")
METRIC_KEYS = ("Success/Failure Ratio", "Total Executions", "Last Updated", "Record")


def metrics(entries: Sequence[Entry], record_name: str) -> dict[str, str]:
    """The metric bullets' values, as the record says."""
    successes = sum(e.success for e in entries)
    head = f"head `{entries[-1].digest[:SHORT]}`" if entries else "head none"
    return {
        "Success/Failure Ratio": f"{successes}:{len(entries) - successes}",
        "Total Executions": str(len(entries)),
        "Last Updated": entries[-1].at[:10] if entries else "never",
        "Record": f"`{record_name}` ({head})",
    }


def log_table(entries: Sequence[Entry]) -> list[str]:
    rows = [
        "| " + " | ".join(LOG_HEADER) + " |",
        "|" + "---|" * len(LOG_HEADER),
    ]
    for e in entries:
        passed = sum(c.passed for c in e.commands)
        result = "SUCCESS" if e.success else "FAILURE"
        rows.append(
            f"| {e.n} | {e.at} | {passed}/{len(e.commands)} passed | {result} "
            f"| `{e.digest[:SHORT]}` |"
        )
    return rows


def apply_record(text: str, entries: Sequence[Entry], record_name: str) -> str | Problem:
    """`text` with its metrics and Execution Log rewritten from `entries`.

    Returns a Problem when the prompt lacks the places those go (run the validator first).
    """
    lines = text.split("\n")
    values = metrics(entries, record_name)
    seen: set[str] = set()
    metrics_section = find_section(split_lines(text), 2, METRICS_SECTION)
    if metrics_section is None:
        return Problem("", 1, f"no '## {METRICS_SECTION}' section")
    for line in metrics_section.body:
        match = METRIC.match(line.text)
        if match and match["key"] in values:
            lines[line.number - 1] = f"- **{match['key']}**: {values[match['key']]}"
            seen.add(match["key"])
    missing = [k for k in METRIC_KEYS if k not in seen]
    if missing:
        return Problem("", metrics_section.line, f"metric line(s) missing: {', '.join(missing)}")
    log = find_section(metrics_section.body, 3, "Execution Log")
    if log is None:
        return Problem("", metrics_section.line, "no '### Execution Log' subsection")
    first = log.line  # heading line number; the body is replaced up to its last line
    last = log.body[-1].number if log.body else first
    while last > first and not lines[last - 1].strip():
        last -= 1
    new_body = ["", LOG_NOTE, *log_table(entries)]
    lines[first:last] = new_body
    return "\n".join(lines)


def check_metrics(
    name: str, section: Section, entries: Sequence[Entry], record_name: str
) -> list[Problem]:
    """The `## Task Metrics & History` section: its derived fields agree with the record."""
    problems: list[Problem] = []
    want = metrics(entries, record_name)
    seen: dict[str, Line] = {}
    for line in section.body:
        match = METRIC.match(line.text)
        if match and match["key"] in want:
            seen[match["key"]] = line
            if match["value"] != want[match["key"]]:
                problems.append(
                    Problem(
                        name,
                        line.number,
                        f"{match['key']} says "
                        f"{match['value']!r} but the record says "
                        f"{want[match['key']]!r} (metrics come only from "
                        "`ccx prompts record`)",
                    )
                )
    for key in METRIC_KEYS:
        if key not in seen:
            problems.append(
                Problem(name, section.line, f"no '- **{key}**: ...' line in the metrics")
            )
    _, subs = sections(section.body, 3)
    by_title = {s.title: s for s in subs}
    evolution = by_title.get("Evolution History")
    if evolution is None:
        problems.append(Problem(name, section.line, "no '### Evolution History' subsection"))
    else:
        found = tables(evolution.body)
        if not found or found[0].header != EVOLUTION_HEADER:
            where = found[0].line if found else evolution.line
            problems.append(
                Problem(
                    name,
                    where,
                    f"the evolution table's columns are not {' | '.join(EVOLUTION_HEADER)}",
                )
            )
        elif not found[0].rows:
            problems.append(Problem(name, found[0].line, "the evolution table has no rows"))
    log = by_title.get("Execution Log")
    if log is None:
        problems.append(Problem(name, section.line, "no '### Execution Log' subsection"))
    else:
        expected = log_table(entries)
        actual = [ln for ln in log.body if ln.text.strip().startswith("|")]
        for i in range(max(len(expected), len(actual))):
            got = actual[i].text.strip() if i < len(actual) else None
            want_row = expected[i] if i < len(expected) else None
            if got != want_row:
                where = actual[i].number if i < len(actual) else log.line
                problems.append(
                    Problem(
                        name,
                        where,
                        f"execution log row {got!r} does not match "
                        f"the record (expected {want_row!r})",
                    )
                )
                break
    return problems
