"""The fixes file's rules: `NNN_<focus>_fixes.json`, structured with the strict converter.

Owns the schema (`FixesFile`, `Fix`) and the checks the schema cannot say: the date's form,
unique ids, lines from 1, no empty text. Pure: text in, the structured file (when it has the
schema's shape) and `Problem`s, each at the JSON line it is about, out.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs
import orjson

from cc_executor.executor.review.jsontext import json_line
from cc_executor.executor.review.problems import Problem
from cc_executor.protocol import InvalidParams, structure_params

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
