"""The review feedback's rules: `NNN_<focus>_review_feedback.md`, section by section.

Owns the six sections and what each must hold — the findings table (numbered rows, a location
that exists in the repository, a severity), the execution log's run markers, the scorecard, the
checklist's cross-references. Pure: text and a `LineCount` in, a `Feedback` (what the pair
check needs) and `Problem`s out; never raises for a malformed file.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

from cc_executor.executor.review.markdown import (
    Line,
    Section,
    Table,
    sections,
    split_lines,
    structural_lines,
    tables,
)
from cc_executor.executor.review.problems import Problem, heading_problems

FEEDBACK_SECTIONS = (
    "Summary",
    "Detailed Findings",
    "Usage Function Execution Log",
    "Scorecard",
    "Claude-Fix Checklist",
    "Recommended Next Action",
)
FINDINGS_HEADER = ("#", "Location", "Severity", "Description", "Explicit Fix Directive")
SEVERITIES = ("BLOCKER", "MAJOR", "MINOR", "NIT")
SUMMARY_MAX_LINES = 3
MARKER = re.compile(r"USAGE_(?P<component>[a-z][a-z0-9_]*?)_(?P<stamp>\d{8}T\d{6}(?:\.\d+)?Z)")
LOCATION = re.compile(r"^`?(?P<file>[^`:\s]+):(?P<line>\d+)`?$")
CHECKBOX = re.compile(r"^\s*[-*]\s+\[(?P<mark>[ xX])\]\s+(?P<text>.+)$")
REFERENCE = re.compile(r"#(\d+)\b")  # a checklist item's reference to finding N

LineCount = Callable[[str], "int | None"]
"""How many lines a repository file has; None when there is no such file."""


@attrs.frozen
class Finding:
    number: int
    line: int
    file: str
    file_line: int
    severity: str
    description: str
    directive: str


@attrs.frozen
class Feedback:
    """What the checks learned from a feedback file, for the consistency check."""

    findings: tuple[Finding, ...]
    markers: tuple[str, ...]


def _table_in(name: str, section: Section, header: tuple[str, ...] | None) -> Table | Problem:
    found = tables(section.body)
    if not found:
        want = " | ".join(header) if header else "a table"
        return Problem(
            name,
            section.line,
            f"section '## {section.title}' has no table (expected a table with columns: {want})",
        )
    table = found[0]
    if header is not None and table.header != header:
        return Problem(
            name,
            table.line,
            f"table columns are {' | '.join(table.header)} "
            f"(expected exactly: {' | '.join(header)})",
        )
    return table


def loose_pipe_problems(name: str, table: Table) -> list[Problem]:
    """A bare `|` inside inline code reads as code here but splits the cell when rendered."""
    return [
        Problem(
            name,
            line,
            "a '|' inside inline code is not escaped "
            "(expected '\\|': Markdown renderers end the cell there)",
        )
        for line in table.loose_pipes
    ]


def check_feedback(name: str, text: str, line_count: LineCount) -> tuple[Feedback, list[Problem]]:
    """Check a `*_review_feedback.md` file; `name` is how problems refer to it."""
    problems: list[Problem] = []
    _, found = sections(split_lines(text), 2)
    problems += heading_problems(name, found, FEEDBACK_SECTIONS)
    by_title = {s.title: s for s in found}
    findings: list[Finding] = []
    findings_read = False
    markers: list[str] = []

    if (summary := by_title.get("Summary")) is not None:
        content = summary.content_lines()
        if not content:
            problems.append(
                Problem(name, summary.line, "the Summary is empty (expected 1-3 lines)")
            )
        elif len(content) > SUMMARY_MAX_LINES:
            problems.append(
                Problem(
                    name,
                    content[SUMMARY_MAX_LINES].number,
                    f"the Summary has {len(content)} lines (expected at most {SUMMARY_MAX_LINES})",
                )
            )

    checklist = by_title.get("Claude-Fix Checklist")
    fixed = fixed_findings(checklist) if checklist is not None else frozenset()
    if (section := by_title.get("Detailed Findings")) is not None:
        table = _table_in(name, section, FINDINGS_HEADER)
        if isinstance(table, Problem):
            problems.append(table)
        else:
            findings, more = _check_findings(name, table, line_count, fixed)
            findings_read = True
            problems += loose_pipe_problems(name, table) + more

    if (section := by_title.get("Usage Function Execution Log")) is not None:
        markers = [m.group(0) for m in MARKER.finditer(section.text())]
        if not markers:
            problems.append(
                Problem(
                    name,
                    section.line,
                    "the execution log shows no usage run marker "
                    "(expected the output of `ccx review run`, with USAGE_<component>_<UTC> "
                    "markers)",
                )
            )

    if (section := by_title.get("Scorecard")) is not None:
        problems += _check_scorecard(name, section)

    if (section := by_title.get("Claude-Fix Checklist")) is not None:
        problems += _check_checklist(name, section, findings if findings_read else None)

    if (
        section := by_title.get("Recommended Next Action")
    ) is not None and not section.content_lines():
        problems.append(Problem(name, section.line, "the Recommended Next Action is empty"))

    return Feedback(tuple(findings), tuple(markers)), problems


def fixed_findings(checklist: Section) -> frozenset[int]:
    """The findings the checklist marks fixed: every item that refers to them is ticked."""
    ticked: set[int] = set()
    open_: set[int] = set()
    for line, structural in structural_lines(checklist.body):
        match = CHECKBOX.match(line.text) if structural else None
        if match:
            (open_ if match["mark"] == " " else ticked).update(_references(match["text"]))
    return frozenset(ticked - open_)


def _references(text: str) -> list[int]:
    return [int(n) for n in REFERENCE.findall(text)]


def _check_findings(
    name: str, table: Table, line_count: LineCount, fixed: frozenset[int]
) -> tuple[list[Finding], list[Problem]]:
    """The findings table's rows; a fixed finding's location is checked for its form only."""
    problems: list[Problem] = []
    findings: list[Finding] = []
    for expected_number, (row_line, cells) in enumerate(table.rows, start=1):
        if len(cells) != len(FINDINGS_HEADER):
            problems.append(
                Problem(
                    name,
                    row_line,
                    f"finding row has {len(cells)} cells (expected {len(FINDINGS_HEADER)})",
                )
            )
            continue
        number, location, severity, description, directive = cells
        if number != str(expected_number):
            problems.append(
                Problem(
                    name,
                    row_line,
                    f"finding number {number!r} "
                    f"(expected {expected_number}: findings are numbered 1, 2, ...)",
                )
            )
        if severity not in SEVERITIES:
            problems.append(
                Problem(
                    name,
                    row_line,
                    f"severity {severity!r} (expected one of {', '.join(SEVERITIES)})",
                )
            )
        for label, value in (("Description", description), ("Explicit Fix Directive", directive)):
            if not value:
                problems.append(Problem(name, row_line, f"the {label} cell is empty"))
        match = LOCATION.match(location)
        if not match:
            problems.append(
                Problem(
                    name,
                    row_line,
                    f"location {location!r} "
                    "(expected path/to/file.py:LINE, relative to the repository)",
                )
            )
            # Keep the finding, so the checklist and the fixes can still refer to its number.
            findings.append(
                Finding(expected_number, row_line, "", 0, severity, description, directive)
            )
            continue
        file, file_line = match["file"], int(match["line"])
        # A fixed finding names the code as it was reviewed; its fix may have moved that line.
        lines = None if expected_number in fixed else line_count(file)
        if expected_number in fixed:
            pass
        elif lines is None:
            problems.append(
                Problem(name, row_line, f"location {location!r}: no file {file} in the repository")
            )
        elif not 1 <= file_line <= lines:
            problems.append(
                Problem(
                    name,
                    row_line,
                    f"location {location!r}: {file} has "
                    f"{lines} lines (expected a line from 1 to {lines})",
                )
            )
        findings.append(
            Finding(expected_number, row_line, file, file_line, severity, description, directive)
        )
    return findings, problems


def _check_scorecard(name: str, section: Section) -> list[Problem]:
    table = _table_in(name, section, None)
    if isinstance(table, Problem):
        return [table]
    if table.header[:2] != ("Area", "Score"):
        return [
            Problem(
                name,
                table.line,
                f"scorecard columns begin {' | '.join(table.header[:2])} (expected Area | Score)",
            )
        ]
    problems = loose_pipe_problems(name, table)
    if not table.rows:
        problems.append(Problem(name, table.line, "the scorecard has no rows"))
    for row_line, cells in table.rows:
        score = cells[1] if len(cells) > 1 else ""
        value = score.removesuffix("/10").strip()
        if not (value.isdigit() and 0 <= int(value) <= 10):
            problems.append(
                Problem(
                    name,
                    row_line,
                    f"score {score!r} (expected a whole number from 0 to 10, e.g. 7 or 7/10)",
                )
            )
    return problems


def _check_checklist(name: str, section: Section, findings: list[Finding] | None) -> list[Problem]:
    """Checkbox items, one per finding; cross-references only when the findings were read."""
    problems: list[Problem] = []
    items: list[tuple[Line, str]] = []
    for line, structural in structural_lines(section.body):
        if not structural or not line.text.strip() or line.text.strip().startswith("<!--"):
            continue
        match = CHECKBOX.match(line.text)
        if match:
            items.append((line, match["text"]))
        elif not findings and line.text.strip().lower().rstrip(".") in ("none", "nothing to fix"):
            continue
        else:
            problems.append(
                Problem(
                    name,
                    line.number,
                    f"checklist line {line.text.strip()!r} "
                    "is not a checkbox item (expected '- [ ] #N ...')",
                )
            )
    if findings is None:
        return problems
    referenced = {n for _, text in items for n in _references(text)}
    for finding in findings:
        if finding.number not in referenced:
            problems.append(
                Problem(
                    name,
                    section.line,
                    f"no checklist item for finding "
                    f"#{finding.number} (expected '- [ ] #{finding.number} ...')",
                )
            )
    for line, text in items:
        for n in _references(text):
            if n not in {f.number for f in findings}:
                problems.append(
                    Problem(
                        name, line.number, f"checklist item refers to #{n}, which is not a finding"
                    )
                )
    if findings and not items:
        problems.append(Problem(name, section.line, "the checklist has no items"))
    return problems
