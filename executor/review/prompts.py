"""Self-improving prompts: the template's sections, and metrics derived from a record.

Theory of operation: a prompt's Success/Failure ratio, execution count, last-updated date,
record head and Execution Log table are never typed by hand. `ccx prompts record` appends one
entry per execution (every verification command of the prompt, run through the daemon) to
`.records/<prompt>.jsonl` beside the prompt, and rewrites those fields from the whole record
with `apply_record`. Each entry carries the digest of the one before it and its own (SHA-256
of its canonical JSON), so editing, removing or reordering entries breaks the chain, and the
head digest shown in the prompt ties the prompt to the record's last entry. The validator
recomputes everything from the record: a count edited in the prompt, a success flipped in
the record, a dropped line — each is reported with where it is and what was expected. This
makes hand edits evident, not impossible: whoever recomputes every digest can forge a record.

Pure: text and parsed records in, problems or text out.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Sequence
from typing import Any

import attrs
import orjson

from cc_executor.executor.review.formats import Problem, heading_problems
from cc_executor.executor.review.markdown import (
    Line,
    Section,
    fences,
    sections,
    split_lines,
    tables,
)

PROMPT_SECTIONS = (
    "Task Metrics & History",
    "Architect's Briefing",
    "Implementer's Workspace",
    "Graduation & Verification",
    "Diagnostics & Recovery",
)
EVOLUTION_HEADER = ("Version", "Date", "Change", "Reason", "Result")
LOG_HEADER = ("#", "Date (UTC)", "Commands", "Result", "Digest")
LOG_NOTE = "<!-- written by `ccx prompts record` from the record; never edit by hand -->"
MIN_RECOVERY_TESTS = 3
GENESIS = "0" * 64
SHORT = 12
VERIFY_INFO = "verify"
METRIC = re.compile(r"^- \*\*(?P<key>[^*]+)\*\*: (?P<value>.*)$")
METRIC_KEYS = ("Success/Failure Ratio", "Total Executions", "Last Updated", "Record")


# -- the record ----------------------------------------------------------------------------


@attrs.frozen
class CommandResult:
    argv: tuple[str, ...]
    run: str
    exit_code: int | None
    outcome: str
    duration: float
    expect: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.outcome == "exited" and self.exit_code == 0 and not self.missing


@attrs.frozen
class Entry:
    """One execution of a prompt: every verification command, in order."""

    n: int
    at: str
    prompt: str
    commands: tuple[CommandResult, ...]
    success: bool
    prev: str
    digest: str


def _canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _body(entry: Entry) -> dict[str, Any]:
    raw = attrs.asdict(entry, recurse=True)
    raw.pop("digest")
    return raw


def digest_of(entry: Entry) -> str:
    return hashlib.sha256(_canonical(_body(entry))).hexdigest()


def new_entry(
    previous: Sequence[Entry], at: str, prompt: str, commands: Sequence[CommandResult]
) -> Entry:
    """The entry that follows `previous`, sealed with its digest."""
    draft = Entry(
        n=len(previous) + 1,
        at=at,
        prompt=prompt,
        commands=tuple(commands),
        success=all(c.passed for c in commands) and bool(commands),
        prev=previous[-1].digest if previous else GENESIS,
        digest="",
    )
    return attrs.evolve(draft, digest=digest_of(draft))


def entry_line(entry: Entry) -> str:
    return orjson.dumps(attrs.asdict(entry, recurse=True)).decode()


def _command(raw: dict[str, Any]) -> CommandResult:
    return CommandResult(
        argv=tuple(raw["argv"]),
        run=str(raw["run"]),
        exit_code=raw["exit_code"],
        outcome=str(raw["outcome"]),
        duration=float(raw["duration"]),
        expect=tuple(raw["expect"]),
        missing=tuple(raw["missing"]),
    )


def parse_record(name: str, text: str, prompt: str) -> tuple[list[Entry], list[Problem]]:
    """Read a record and check its chain; the entries are kept up to the first broken one."""
    entries: list[Entry] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
            entry = Entry(
                n=raw["n"],
                at=raw["at"],
                prompt=raw["prompt"],
                commands=tuple(_command(c) for c in raw["commands"]),
                success=raw["success"],
                prev=raw["prev"],
                digest=raw["digest"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return entries, [Problem(name, number, f"unreadable record entry ({exc})")]
        want_prev = entries[-1].digest if entries else GENESIS
        checks = (
            (entry.n == len(entries) + 1, f"entry number {entry.n} (expected {len(entries) + 1})"),
            (entry.prompt == prompt, f"entry of prompt {entry.prompt!r} (expected {prompt!r})"),
            (
                entry.prev == want_prev,
                f"entry {entry.n}: prev {entry.prev[:SHORT]} does not chain to the entry "
                f"before it (expected {want_prev[:SHORT]}): an entry was removed or reordered",
            ),
            (
                entry.digest == digest_of(entry),
                f"entry {entry.n}: digest {entry.digest[:SHORT]} does not match its content "
                f"(expected {digest_of(entry)[:SHORT]}): the entry was edited",
            ),
            (
                entry.success == (all(c.passed for c in entry.commands) and bool(entry.commands)),
                f"entry {entry.n}: success={entry.success} contradicts its commands' results",
            ),
        )
        for ok, message in checks:
            if not ok:
                return entries, [Problem(name, number, message)]
        entries.append(entry)
    return entries, []


# -- the prompt's derived fields -------------------------------------------------------------


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
    metrics_section = _section(text, "Task Metrics & History")
    if metrics_section is None:
        return Problem("", 1, "no '## Task Metrics & History' section")
    for line in metrics_section.body:
        match = METRIC.match(line.text)
        if match and match["key"] in values:
            lines[line.number - 1] = f"- **{match['key']}**: {values[match['key']]}"
            seen.add(match["key"])
    missing = [k for k in METRIC_KEYS if k not in seen]
    if missing:
        return Problem("", metrics_section.line, f"metric line(s) missing: {', '.join(missing)}")
    log = _subsection(metrics_section, "Execution Log")
    if log is None:
        return Problem("", metrics_section.line, "no '### Execution Log' subsection")
    first = log.line  # heading line number; the body is replaced up to its last line
    last = log.body[-1].number if log.body else first
    while last > first and not lines[last - 1].strip():
        last -= 1
    new_body = ["", LOG_NOTE, *log_table(entries)]
    lines[first:last] = new_body
    return "\n".join(lines)


def _section(text: str, title: str) -> Section | None:
    _, found = sections(split_lines(text), 2)
    return next((s for s in found if s.title == title), None)


def _subsection(section: Section, title: str) -> Section | None:
    _, found = sections(section.body, 3)
    return next((s for s in found if s.title == title), None)


# -- verification commands -----------------------------------------------------------------


@attrs.frozen
class Verification:
    """One verification command: argv, and substrings its stdout must contain."""

    line: int
    argv: tuple[str, ...]
    expect: tuple[str, ...]


def verifications(name: str, text: str) -> tuple[list[Verification], list[Problem]]:
    """The commands of the ```verify blocks in Graduation & Verification."""
    section = _section(text, "Graduation & Verification")
    if section is None:
        return [], [Problem(name, 1, "no '## Graduation & Verification' section")]
    found: list[Verification] = []
    problems: list[Problem] = []
    blocks = [f for f in fences(section.body) if f.info == VERIFY_INFO]
    if not blocks:
        problems.append(
            Problem(
                name,
                section.line,
                "no ```verify block (expected one command per line, "
                "optionally followed by 'expect: TEXT' lines)",
            )
        )
    for block in blocks:
        for line in block.lines:
            stripped = line.text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("expect:"):
                wanted = stripped.removeprefix("expect:").strip()
                if not found or found[-1].line < block.line:
                    problems.append(
                        Problem(
                            name,
                            line.number,
                            "'expect:' before any command "
                            "(expected it after the command it checks)",
                        )
                    )
                elif not wanted:
                    problems.append(Problem(name, line.number, "'expect:' with no text"))
                else:
                    last = found[-1]
                    found[-1] = attrs.evolve(last, expect=(*last.expect, wanted))
                continue
            try:
                argv = tuple(shlex.split(stripped))
            except ValueError as exc:
                problems.append(Problem(name, line.number, f"cannot split command: {exc}"))
                continue
            found.append(Verification(line.number, argv, ()))
        if not any(v.line > block.line for v in found):
            problems.append(Problem(name, block.line, "the ```verify block has no command"))
    return found, problems


# -- the template's structure ----------------------------------------------------------------


def _nonempty(name: str, section: Section) -> list[Problem]:
    if not section.content_lines():
        return [Problem(name, section.line, f"section '## {section.title}' is empty")]
    return []


def check_prompt(name: str, text: str, entries: Sequence[Entry], record_name: str) -> list[Problem]:
    """Check a prompt against the template and against its record (already chain-checked)."""
    lines = split_lines(text)
    _, found = sections(lines, 2)
    problems: list[Problem] = []
    first = next((ln for ln in lines if ln.text.strip()), None)
    if first is None or not first.text.startswith("# "):
        problems.append(Problem(name, 1, "no title (expected '# <prompt name>' first)"))
    problems += heading_problems(name, found, PROMPT_SECTIONS)
    by_title = {s.title: s for s in found}
    for title in ("Architect's Briefing", "Implementer's Workspace"):
        if title in by_title:
            problems += _nonempty(name, by_title[title])
    if (section := by_title.get("Task Metrics & History")) is not None:
        problems += _check_metrics(name, text, section, entries, record_name)
    if (section := by_title.get("Graduation & Verification")) is not None:
        problems += _check_graduation(name, text, section)
    if (section := by_title.get("Diagnostics & Recovery")) is not None:
        _, subs = sections(section.body, 3)
        tests = [s for s in subs if s.title.startswith("Recovery Test")]
        if len(tests) < MIN_RECOVERY_TESTS:
            problems.append(
                Problem(
                    name,
                    section.line,
                    f"{len(tests)} recovery test(s) "
                    f"(expected at least {MIN_RECOVERY_TESTS} "
                    "'### Recovery Test N: ...' subsections)",
                )
            )
        problems += [
            Problem(name, s.line, f"'### {s.title}' is empty")
            for s in tests
            if not s.content_lines()
        ]
    return problems


def _check_metrics(
    name: str, text: str, section: Section, entries: Sequence[Entry], record_name: str
) -> list[Problem]:
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


def _check_graduation(name: str, text: str, section: Section) -> list[Problem]:
    problems: list[Problem] = []
    body = section.body
    prediction = [ln for ln in body if ln.text.startswith("**Prediction**:")]
    if not prediction or not prediction[0].text.removeprefix("**Prediction**:").strip():
        problems.append(
            Problem(
                name,
                section.line,
                "no prediction (expected a line '**Prediction**: what the verification will show')",
            )
        )
    heads = [i for i, ln in enumerate(body) if ln.text.strip() == "**Assertions**:"]
    if not heads:
        problems.append(
            Problem(
                name, section.line, "no assertions (expected '**Assertions**:' followed by a list)"
            )
        )
    else:
        after = [ln for ln in body[heads[0] + 1 :] if ln.text.strip()]
        if not after or not re.match(r"^\s*[-*] \S", after[0].text):
            problems.append(
                Problem(
                    name, body[heads[0]].number, "'**Assertions**:' is not followed by a list item"
                )
            )
    _, more = verifications(name, text)
    return problems + more
