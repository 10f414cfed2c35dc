"""The agreement of a review's two files: the fixes file says what the feedback says.

One fix per finding, at the finding's file and line, with the severity its finding's severity
maps to, and none without its finding; `review_id` is the file name's `NNN_<focus>`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from cc_executor.executor.review.feedback import Feedback
from cc_executor.executor.review.fixes import FixesFile
from cc_executor.executor.review.jsontext import json_line
from cc_executor.executor.review.problems import Problem

FIX_SEVERITY: Mapping[str, str] = {
    "BLOCKER": "critical",
    "MAJOR": "major",
    "MINOR": "minor",
    "NIT": "minor",
}


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
