"""Self-improving prompts: the template's sections and what each must hold.

`check_prompt` checks a prompt against `SELF_IMPROVING_PROMPT_TEMPLATE.md` — a title, the five
`##` sections in order, a briefing and a workspace, a prediction, assertions and a verify block,
three recovery tests — and, through `metrics`, against its record. Pure: text and the record's
(already chain-checked) entries in, problems out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cc_executor.executor.review.chain import Entry
from cc_executor.executor.review.markdown import Section, sections, split_lines
from cc_executor.executor.review.metrics import METRICS_SECTION, check_metrics
from cc_executor.executor.review.problems import Problem, heading_problems
from cc_executor.executor.review.verify import GRADUATION_SECTION, verifications

PROMPT_SECTIONS = (
    METRICS_SECTION,
    "Architect's Briefing",
    "Implementer's Workspace",
    GRADUATION_SECTION,
    "Diagnostics & Recovery",
)
MIN_RECOVERY_TESTS = 3


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
    if (section := by_title.get(METRICS_SECTION)) is not None:
        problems += check_metrics(name, section, entries, record_name)
    if (section := by_title.get(GRADUATION_SECTION)) is not None:
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
