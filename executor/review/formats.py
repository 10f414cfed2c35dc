"""The review artifacts' formats: file names, review feedback, fixes JSON, and their agreement.

Pure: every check takes text (and, for locations, a function telling how many lines a file
of the repository has) and returns `Problem`s — file, line, what is wrong, what was expected —
never raises for a malformed artifact. docs/review.md is the human-readable version of the
rules here; the two must say the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Literal

import attrs
import orjson

from cc_executor.executor.review.markdown import (
    Line,
    Section,
    Table,
    sections,
    split_lines,
    structural_lines,
    tables,
)
from cc_executor.protocol import InvalidParams, structure_params


@attrs.frozen
class Problem:
    """One thing wrong with an artifact; `str()` is `file:line: message`."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


# -- names ---------------------------------------------------------------------------------

ArtifactType = Literal["review_feedback", "fixes"]
EXTENSION: Mapping[str, str] = {"review_feedback": "md", "fixes": "json"}
NAME = re.compile(r"^(?P<seq>\d+)_(?P<focus>.+?)_(?P<type>review_feedback|fixes)\.(?P<ext>\w+)$")
FOCUS = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
# A focus area names the technical challenge (`websocket_backpressure`), so words that say
# nothing about it cannot make one up on their own.
_GENERIC = """
    review reviews feedback fix fixes general misc miscellaneous various code changes change
    update updates issue issues stuff cleanup round first second third final todo new old
    test tests all other
"""
GENERIC_WORDS = frozenset(_GENERIC.split())


@attrs.frozen
class ArtifactName:
    sequence: int
    focus_area: str
    type: ArtifactType

    @property
    def review_id(self) -> str:
        return f"{self.sequence:03d}_{self.focus_area}"

    def file_name(self) -> str:
        return f"{self.review_id}_{self.type}.{EXTENSION[self.type]}"


def check_focus_area(focus: str) -> str | None:
    """None when `focus` is a valid focus area, else what is wrong with it."""
    if not FOCUS.match(focus):
        return (
            f"focus area {focus!r} is not snake_case of at least two words "
            "(expected e.g. websocket_backpressure)"
        )
    if all(word in GENERIC_WORDS for word in focus.split("_")):
        return (
            f"focus area {focus!r} names no technical challenge "
            "(expected e.g. process_tree_cancellation)"
        )
    return None


def parse_name(name: str) -> ArtifactName | Problem:
    """`{SEQUENCE}_{FOCUS_AREA}_{TYPE}.{ext}` or a problem with it (at line 1)."""
    expected = (
        "expected {SEQUENCE}_{FOCUS_AREA}_{TYPE}.{ext}, e.g. 001_websocket_backpressure_fixes.json"
    )
    match = NAME.match(name)
    if not match:
        return Problem(name, 1, f"file name does not follow the naming rule ({expected})")
    if not re.fullmatch(r"\d{3}", match["seq"]):
        return Problem(name, 1, f"sequence {match['seq']!r} is not 3 digits (expected e.g. 001)")
    if match["seq"] == "000":
        return Problem(name, 1, "sequence 000 is not allowed (sequences start at 001)")
    trouble = check_focus_area(match["focus"])
    if trouble:
        return Problem(name, 1, trouble)
    kind: ArtifactType = "fixes" if match["type"] == "fixes" else "review_feedback"
    if match["ext"] != EXTENSION[kind]:
        return Problem(name, 1, f"a {kind} file ends in .{EXTENSION[kind]}, not .{match['ext']}")
    return ArtifactName(int(match["seq"]), match["focus"], kind)


def next_sequence(names: list[str]) -> int:
    """The first sequence after every sequence used by a well-formed artifact name."""
    used = [n.sequence for n in map(parse_name, names) if isinstance(n, ArtifactName)]
    return max(used, default=0) + 1


# -- review feedback -----------------------------------------------------------------------

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
FIX_SEVERITY: Mapping[str, str] = {
    "BLOCKER": "critical",
    "MAJOR": "major",
    "MINOR": "minor",
    "NIT": "minor",
}
SUMMARY_MAX_LINES = 3
MARKER = re.compile(r"USAGE_(?P<component>[a-z][a-z0-9_]*?)_(?P<stamp>\d{8}T\d{6}(?:\.\d+)?Z)")
LOCATION = re.compile(r"^`?(?P<file>[^`:\s]+):(?P<line>\d+)`?$")
CHECKBOX = re.compile(r"^\s*[-*]\s+\[(?P<mark>[ xX])\]\s+(?P<text>.+)$")

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


def heading_problems(name: str, found: list[Section], expected: tuple[str, ...]) -> list[Problem]:
    problems: list[Problem] = []
    titles = [s.title for s in found]
    for s in found:
        if s.title not in expected:
            problems.append(
                Problem(
                    name,
                    s.line,
                    f"unexpected section '## {s.title}' (expected only: {', '.join(expected)})",
                )
            )
    for title in expected:
        if title not in titles:
            problems.append(Problem(name, _end_line(found), f"missing section '## {title}'"))
        elif titles.count(title) > 1:
            again = [s for s in found if s.title == title][1]
            problems.append(Problem(name, again.line, f"section '## {title}' appears twice"))
    known = [s for s in found if s.title in expected]
    order = [expected.index(s.title) for s in known]
    for i in range(1, len(known)):
        s, index, prev = known[i], order[i], order[i - 1]
        if index < prev:
            problems.append(
                Problem(
                    name,
                    s.line,
                    f"section '## {s.title}' is out of order "
                    f"(expected order: {', '.join(expected)})",
                )
            )
            break
    return problems


def _end_line(found: list[Section]) -> int:
    if not found:
        return 1
    last = found[-1]
    return last.body[-1].number if last.body else last.line


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
            numbers = {int(n) for n in re.findall(r"#(\d+)\b", match["text"])}
            (open_ if match["mark"] == " " else ticked).update(numbers)
    return frozenset(ticked - open_)


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
    referenced = {int(n) for _, text in items for n in re.findall(r"#(\d+)\b", text)}
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
        for n in re.findall(r"#(\d+)\b", text):
            if int(n) not in {f.number for f in findings}:
                problems.append(
                    Problem(
                        name, line.number, f"checklist item refers to #{n}, which is not a finding"
                    )
                )
    if findings and not items:
        problems.append(Problem(name, section.line, "the checklist has no items"))
    return problems


# -- fixes JSON ----------------------------------------------------------------------------

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@attrs.frozen
class Fix:
    id: int
    severity: Literal["critical", "major", "minor"]
    file: str
    line: int
    issue: str
    fix: str
    verification: str


@attrs.frozen
class FixesFile:
    review_id: str
    component: str
    date: str
    fixes: tuple[Fix, ...]


@attrs.define
class _Container:
    """An object or array being read: its path, the next element's index, the pending key."""

    path: str
    is_object: bool
    index: int = 0
    key: str | None = None


def value_lines(text: str) -> dict[str, int]:
    """The line each value of a JSON text starts on, by converter path (`$.fixes[1].line`).

    A member is placed at its key's line. Reads the text's structure (brackets, commas,
    strings with their escapes) without decoding it; a text that is not JSON gives a partial
    answer, never an error.
    """
    found: dict[str, int] = {}
    open_: list[_Container] = []
    line, i = 1, 0

    def here() -> str:
        if not open_:
            return "$"
        top = open_[-1]
        return f"{top.path}.{top.key}" if top.is_object else f"{top.path}[{top.index}]"

    while i < len(text):
        char = text[i]
        top = open_[-1] if open_ else None
        if char == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if top is not None and top.is_object and top.key is None:
                top.key = text[i + 1 : end]
            found.setdefault(here(), line)
            line += text.count("\n", i, end)
            i = end + 1
            continue
        if char in "{[":
            found.setdefault(here(), line)
            open_.append(_Container(here(), is_object=char == "{"))
        elif char in "}]":
            if open_:
                open_.pop()
        elif char == "," and top is not None:
            top.index += 1
            top.key = None
        elif char == "\n":
            line += 1
        elif char not in " \t\r:":
            found.setdefault(here(), line)  # a number, true, false or null
        i += 1
    return found


def json_line(text: str, path: str) -> int:
    """The line of the JSON text a converter path points at, or of its nearest parent there."""
    found = value_lines(text)
    while path not in found and path != "$":
        path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) or "$"
    return found.get(path, 1)


def parse_fixes(name: str, text: str) -> tuple[FixesFile | None, list[Problem]]:
    """Structure a fixes file with the strict converter; every problem with its JSON line."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, [Problem(name, exc.lineno, f"not valid JSON: {exc.msg}")]
    if not isinstance(raw, dict):
        return None, [
            Problem(
                name,
                1,
                "the fixes file is not a JSON object "
                "(expected {review_id, component, date, fixes})",
            )
        ]
    try:
        fixes = structure_params(raw, FixesFile)
    except InvalidParams as exc:
        problems = []
        for item in exc.data if isinstance(exc.data, list) else [str(exc)]:
            message, _, where = str(item).rpartition(" @ ")
            path = "$" + where.removeprefix("$.params")
            problems.append(Problem(name, json_line(text, path), f"{message} at {path}"))
        return None, problems
    problems = []
    if not DATE.match(fixes.date):
        problems.append(
            Problem(name, json_line(text, "$.date"), f"date {fixes.date!r} (expected YYYY-MM-DD)")
        )
    if not fixes.component.strip():
        problems.append(Problem(name, json_line(text, "$.component"), "component is empty"))
    seen: set[int] = set()
    for i, fix in enumerate(fixes.fixes):
        if fix.id in seen:
            problems.append(
                Problem(name, json_line(text, f"$.fixes[{i}].id"), f"fix id {fix.id} appears twice")
            )
        seen.add(fix.id)
        if fix.line < 1:
            problems.append(
                Problem(
                    name,
                    json_line(text, f"$.fixes[{i}].line"),
                    f"line {fix.line} (expected a line number from 1)",
                )
            )
        for key in ("file", "issue", "fix", "verification"):
            if not str(getattr(fix, key)).strip():
                problems.append(
                    Problem(
                        name, json_line(text, f"$.fixes[{i}].{key}"), f"fixes[{i}].{key} is empty"
                    )
                )
    return fixes, problems


def check_pair(
    feedback_name: str,
    feedback: Feedback,
    fixes_name: str,
    fixes_text: str,
    fixes: FixesFile,
    review_id: str,
) -> list[Problem]:
    """The fixes file says what the feedback says: one fix per finding, same place, same weight."""
    problems: list[Problem] = []
    if fixes.review_id != review_id:
        problems.append(
            Problem(
                fixes_name,
                json_line(fixes_text, "$.review_id"),
                f"review_id {fixes.review_id!r} (expected {review_id!r}, from the file name)",
            )
        )
    by_id = {fix.id: (i, fix) for i, fix in enumerate(fixes.fixes)}
    for finding in feedback.findings:
        if finding.number not in by_id:
            problems.append(
                Problem(
                    fixes_name,
                    json_line(fixes_text, "$.fixes"),
                    f"no fix with id {finding.number} for finding "
                    f"#{finding.number} of {feedback_name}:{finding.line}",
                )
            )
            continue
        i, fix = by_id[finding.number]
        want = FIX_SEVERITY.get(finding.severity)
        if want is not None and fix.severity != want:
            problems.append(
                Problem(
                    fixes_name,
                    json_line(fixes_text, f"$.fixes[{i}].severity"),
                    f"fix {fix.id} has severity {fix.severity!r} (expected "
                    f"{want!r} for {finding.severity} in {feedback_name}:"
                    f"{finding.line})",
                )
            )
        if finding.file_line and (fix.file, fix.line) != (finding.file, finding.file_line):
            problems.append(
                Problem(
                    fixes_name,
                    json_line(fixes_text, f"$.fixes[{i}].file"),
                    f"fix {fix.id} is at {fix.file}:{fix.line} (expected "
                    f"{finding.file}:{finding.file_line}, as in {feedback_name}:"
                    f"{finding.line})",
                )
            )
    numbers = {f.number for f in feedback.findings}
    for fix_id, (i, _) in by_id.items():
        if fix_id not in numbers:
            problems.append(
                Problem(
                    fixes_name,
                    json_line(fixes_text, f"$.fixes[{i}].id"),
                    f"fix {fix_id} has no finding #{fix_id} in {feedback_name}",
                )
            )
    return problems
