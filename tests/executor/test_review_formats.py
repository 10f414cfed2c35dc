"""The review formats' validators: valid shapes pass, each deviation gets its precise message."""

from __future__ import annotations

import orjson
import pytest

from cc_executor.executor.review.feedback import check_feedback
from cc_executor.executor.review.fixes import parse_fixes
from cc_executor.executor.review.jsontext import json_line
from cc_executor.executor.review.markdown import split_lines, tables
from cc_executor.executor.review.names import ArtifactName, next_sequence, parse_name
from cc_executor.executor.review.pair import check_pair
from cc_executor.executor.review.problems import Problem

NAME = "001_websocket_backpressure_review_feedback.md"
FIXES_NAME = "001_websocket_backpressure_fixes.json"
FILES = {"executor/session.py": 400, "supervision/pump.py": 180}

FEEDBACK = """\
# Review 001: websocket back-pressure

## Summary
The pump blocks correctly under a slow client.
Two findings, one major.

## Detailed Findings
| # | Location | Severity | Description | Explicit Fix Directive |
|---|---|---|---|---|
| 1 | `executor/session.py:120` | MAJOR | The send waits without a bound. | Wrap it in fail_after. |
| 2 | `supervision/pump.py:40` | NIT | A comment is stale. | Update the comment. |

## Usage Function Execution Log
### `python -m cc_executor.protocol.usage`
```text
## this heading is output, not a section
USAGE_protocol_20250101T120000.123456Z
```

## Scorecard
| Area | Score | Notes |
|---|---|---|
| Correctness | 8 | |
| Tests | 7/10 | |

## Claude-Fix Checklist
- [ ] #1 bound the send
- [x] #2 comment

## Recommended Next Action
Apply fix 1, then re-run the usage demos.
"""


def fixes_json(**changes: object) -> str:
    raw: dict[str, object] = {
        "review_id": "001_websocket_backpressure",
        "component": "executor",
        "date": "2025-01-01",
        "fixes": [
            {
                "id": 1,
                "severity": "major",
                "file": "executor/session.py",
                "line": 120,
                "issue": "unbounded send",
                "fix": "fail_after around the send",
                "verification": "python -m pytest tests/executor/test_backpressure.py",
            },
            {
                "id": 2,
                "severity": "minor",
                "file": "supervision/pump.py",
                "line": 40,
                "issue": "stale comment",
                "fix": "update it",
                "verification": "read it",
            },
        ],
    }
    raw.update(changes)
    return orjson.dumps(raw, option=orjson.OPT_INDENT_2).decode()


def feedback_problems(text: str) -> list[str]:
    _, problems = check_feedback(NAME, text, FILES.get)
    return [str(p) for p in problems]


def test_valid_feedback_passes_and_yields_findings() -> None:
    feedback, problems = check_feedback(NAME, FEEDBACK, FILES.get)
    assert problems == []
    assert [(f.number, f.file, f.file_line, f.severity) for f in feedback.findings] == [
        (1, "executor/session.py", 120, "MAJOR"),
        (2, "supervision/pump.py", 40, "NIT"),
    ]
    assert feedback.markers == ("USAGE_protocol_20250101T120000.123456Z",)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t.replace("## Scorecard", "## Scores"),
            [
                f"{NAME}:20: unexpected section '## Scores' (expected only: Summary, Detailed "
                "Findings, Usage Function Execution Log, Scorecard, Claude-Fix Checklist, "
                "Recommended Next Action)",
                f"{NAME}:32: missing section '## Scorecard'",
            ],
        ),
        (
            lambda t: t.replace("Two findings, one major.", "a\nb\nc"),
            [f"{NAME}:7: the Summary has 4 lines (expected at most 3)"],
        ),
        (
            lambda t: t.replace("| MAJOR |", "| HIGH |"),
            [f"{NAME}:10: severity 'HIGH' (expected one of BLOCKER, MAJOR, MINOR, NIT)"],
        ),
        (
            lambda t: t.replace("session.py:120", "session.py:999"),
            [
                f"{NAME}:10: location '`executor/session.py:999`': executor/session.py has 400 "
                "lines (expected a line from 1 to 400)"
            ],
        ),
        (
            lambda t: t.replace("session.py:120", "gone.py:1"),
            [
                f"{NAME}:10: location '`executor/gone.py:1`': no file executor/gone.py in the "
                "repository"
            ],
        ),
        (
            lambda t: t.replace("`supervision/pump.py:40`", "the pump"),
            [
                f"{NAME}:11: location 'the pump' (expected path/to/file.py:LINE, relative to the "
                "repository)"
            ],
        ),
        (
            lambda t: t.replace("| Fix Directive |", "| Fix |").replace(
                "Explicit Fix Directive", "Fix"
            ),
            [
                f"{NAME}:8: table columns are # | Location | Severity | Description | Fix "
                "(expected exactly: # | Location | Severity | Description | Explicit Fix Directive)"
            ],
        ),
        (
            lambda t: t.replace("| 8 |", "| 11 |"),
            [f"{NAME}:23: score '11' (expected a whole number from 0 to 10, e.g. 7 or 7/10)"],
        ),
        (
            lambda t: t.replace("USAGE_protocol_20250101T120000.123456Z", "no marker"),
            [
                f"{NAME}:13: the execution log shows no usage run marker (expected the output of "
                "`ccx review run`, with USAGE_<component>_<UTC> markers)"
            ],
        ),
        (
            lambda t: t.replace("- [x] #2 comment", "- comment two"),
            [
                f"{NAME}:28: checklist line '- comment two' is not a checkbox item (expected "
                "'- [ ] #N ...')",
                f"{NAME}:26: no checklist item for finding #2 (expected '- [ ] #2 ...')",
            ],
        ),
        (
            lambda t: t.replace("Apply fix 1, then re-run the usage demos.", ""),
            [f"{NAME}:30: the Recommended Next Action is empty"],
        ),
    ],
)
def test_feedback_deviations(change: object, expected: list[str]) -> None:
    assert callable(change)
    assert feedback_problems(change(FEEDBACK)) == expected


def test_a_fixed_finding_keeps_the_location_it_was_reviewed_at() -> None:
    # Finding #2 is ticked: its fix may have moved or removed the line the review names.
    moved = FEEDBACK.replace("supervision/pump.py:40", "supervision/pump.py:999")
    assert feedback_problems(moved) == []
    assert feedback_problems(moved.replace("pump.py:999", "gone.py:40")) == []
    # Its form is still checked, and an open finding's location must exist.
    assert feedback_problems(moved.replace("`supervision/pump.py:999`", "the pump")) == [
        f"{NAME}:11: location 'the pump' (expected path/to/file.py:LINE, relative to the "
        "repository)"
    ]
    assert feedback_problems(moved.replace("- [x] #2", "- [ ] #2")) == [
        f"{NAME}:11: location '`supervision/pump.py:999`': supervision/pump.py has 180 lines "
        "(expected a line from 1 to 180)"
    ]
    both = moved.replace("- [x] #2 comment", "- [x] #2 comment\n- [ ] #2 the rest of it")
    assert feedback_problems(both) == feedback_problems(moved.replace("- [x] #2", "- [ ] #2"))


def test_sections_out_of_order() -> None:
    summary, rest = FEEDBACK.split("## Detailed Findings")
    head, body = summary.split("## Summary")
    findings, after = rest.split("## Usage Function Execution Log")
    swapped = head + "## Detailed Findings" + findings + "## Summary" + body
    swapped += "## Usage Function Execution Log" + after
    problems = feedback_problems(swapped)
    assert problems == [
        f"{NAME}:9: section '## Summary' is out of order (expected order: Summary, Detailed "
        "Findings, Usage Function Execution Log, Scorecard, Claude-Fix Checklist, Recommended "
        "Next Action)"
    ]


def test_clean_review_has_empty_findings_and_a_none_checklist() -> None:
    clean = FEEDBACK.replace(
        "| 1 | `executor/session.py:120` | MAJOR | The send waits without a bound. | Wrap it in "
        "fail_after. |\n| 2 | `supervision/pump.py:40` | NIT | A comment is stale. | Update the "
        "comment. |\n",
        "",
    ).replace("- [ ] #1 bound the send\n- [x] #2 comment", "None.")
    feedback, problems = check_feedback(NAME, clean, FILES.get)
    assert problems == []
    assert feedback.findings == ()


# -- fixes ---------------------------------------------------------------------------------


def test_valid_fixes_agree_with_their_feedback() -> None:
    feedback, _ = check_feedback(NAME, FEEDBACK, FILES.get)
    text = fixes_json()
    fixes, problems = parse_fixes(FIXES_NAME, text)
    assert problems == []
    assert fixes is not None
    assert [f.id for f in fixes.fixes] == [1, 2]
    assert check_pair(NAME, feedback, FIXES_NAME, text, fixes, "001_websocket_backpressure") == []


def fix_problems(text: str) -> list[str]:
    _, problems = parse_fixes(FIXES_NAME, text)
    return [str(p) for p in problems]


def test_fixes_schema_is_strict() -> None:
    text = (
        fixes_json()
        .replace('"line": 40', '"line": "40"')
        .replace('"severity": "major"', '"severity": "MAJOR"')
    )
    assert fix_problems(text) == [
        f"{FIXES_NAME}:8: expected one of 'critical', 'major', 'minor' at $.fixes[0].severity",
        f"{FIXES_NAME}:19: expected integer at $.fixes[1].line",
    ]


def test_fixes_missing_and_extra_fields() -> None:
    raw = orjson.loads(fixes_json())
    del raw["date"]
    raw["fixes"][1]["extra"] = True
    text = orjson.dumps(raw, option=orjson.OPT_INDENT_2).decode()
    assert fix_problems(text) == [
        f"{FIXES_NAME}:1: required field missing at $.date",
        f"{FIXES_NAME}:14: unexpected fields (extra) at $.fixes[1]",
    ]


def test_fixes_values() -> None:
    raw = orjson.loads(fixes_json(date="01/02/2025"))
    raw["fixes"][1]["id"] = 1
    raw["fixes"][0]["issue"] = " "
    text = orjson.dumps(raw, option=orjson.OPT_INDENT_2).decode()
    assert fix_problems(text) == [
        f"{FIXES_NAME}:4: date '01/02/2025' (expected YYYY-MM-DD)",
        f"{FIXES_NAME}:11: fixes[0].issue is empty",
        f"{FIXES_NAME}:16: fix id 1 appears twice",
    ]


INLINE_BRACKETS = """\
{"review_id": "001_websocket_backpressure", "component": "executor", "date": "2025-01-01",
 "fixes": [{"id": 1, "severity": "major", "file": "executor/session.py", "line": 120,
            "issue": "a \\"severity\\": {\\"line\\": [1]}", "fix": "f", "verification": "v"},
           {"id": 2, "severity": "MINOR", "file": "supervision/pump.py", "line": "40",
            "issue": "stale comment", "fix": "update it", "verification": "read it",
            "extra": true}]}
"""


def test_fixes_problems_are_located_in_inline_bracket_layouts() -> None:
    # `"fixes": [{` on one line, a string holding braces and key names: each problem of
    # fixes[1] is at fixes[1]'s own line, not at line 1.
    assert fix_problems(INLINE_BRACKETS) == [
        f"{FIXES_NAME}:4: expected one of 'critical', 'major', 'minor' at $.fixes[1].severity",
        f"{FIXES_NAME}:4: expected integer at $.fixes[1].line",
        f"{FIXES_NAME}:4: unexpected fields (extra) at $.fixes[1]",
    ]
    one_line = " ".join(t.strip() for t in INLINE_BRACKETS.splitlines())
    one_line = one_line.replace('"MINOR"', '"minor"')
    assert fix_problems(one_line.replace('"40"', "0").replace(', "extra": true', "")) == [
        f"{FIXES_NAME}:1: line 0 (expected a line number from 1)"
    ]


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("$", 1),
        ("$.date", 1),
        ("$.fixes", 2),
        ("$.fixes[0]", 2),
        ("$.fixes[0].issue", 3),
        ("$.fixes[1]", 4),
        ("$.fixes[1].extra", 6),
        ("$.fixes[7].line", 2),
        ("$.nothing[0]", 1),
    ],
)
def test_json_line_follows_the_structure(path: str, line: int) -> None:
    assert json_line(INLINE_BRACKETS, path) == line


def test_fixes_not_json() -> None:
    [problem] = fix_problems('{\n  "review_id": ,\n}')
    assert problem.startswith(f"{FIXES_NAME}:2: not valid JSON: ")


def test_fixes_inconsistent_with_feedback() -> None:
    feedback, _ = check_feedback(NAME, FEEDBACK, FILES.get)
    raw = orjson.loads(fixes_json(review_id="002_other_thing"))
    raw["fixes"][0]["severity"] = "critical"
    raw["fixes"][1]["line"] = 41
    raw["fixes"].append({**raw["fixes"][1], "id": 3})
    text = orjson.dumps(raw, option=orjson.OPT_INDENT_2).decode()
    fixes, problems = parse_fixes(FIXES_NAME, text)
    assert fixes is not None
    assert problems == []
    assert [
        str(p)
        for p in check_pair(NAME, feedback, FIXES_NAME, text, fixes, "001_websocket_backpressure")
    ] == [
        f"{FIXES_NAME}:2: review_id '002_other_thing' (expected '001_websocket_backpressure', "
        "from the file name)",
        f"{FIXES_NAME}:8: fix 1 has severity 'critical' (expected 'major' for MAJOR in {NAME}:10)",
        f"{FIXES_NAME}:18: fix 2 is at supervision/pump.py:41 (expected supervision/pump.py:40, "
        f"as in {NAME}:11)",
        f"{FIXES_NAME}:25: fix 3 has no finding #3 in {NAME}",
    ]


# -- names ---------------------------------------------------------------------------------


def test_valid_names() -> None:
    assert parse_name(NAME) == ArtifactName(1, "websocket_backpressure", "review_feedback")
    assert parse_name(FIXES_NAME) == ArtifactName(1, "websocket_backpressure", "fixes")
    assert ArtifactName(12, "process_tree_cancellation", "fixes").file_name() == (
        "012_process_tree_cancellation_fixes.json"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1_websocket_backpressure_fixes.json", "sequence '1' is not 3 digits (expected e.g. 001)"),
        ("000_websocket_backpressure_fixes.json", "sequence 000 is not allowed"),
        (
            "001_backpressure_fixes.json",
            "focus area 'backpressure' is not snake_case of at least "
            "two words (expected e.g. websocket_backpressure)",
        ),
        (
            "001_code_review_fixes.json",
            "focus area 'code_review' names no technical challenge "
            "(expected e.g. process_tree_cancellation)",
        ),
        (
            "001_Websocket_Backpressure_fixes.json",
            "focus area 'Websocket_Backpressure' is not snake_case",
        ),
        ("001_websocket_backpressure_fixes.md", "a fixes file ends in .json, not .md"),
        ("001_websocket_backpressure_review.md", "file name does not follow the naming rule"),
    ],
)
def test_bad_names(name: str, message: str) -> None:
    problem = parse_name(name)
    assert isinstance(problem, Problem)
    assert problem.file == name
    assert problem.message.startswith(message)


def test_next_sequence() -> None:
    assert next_sequence([]) == 1
    assert next_sequence([NAME, FIXES_NAME, "README.md", "007_wire_framing_fixes.json"]) == 8


# -- tables --------------------------------------------------------------------------------

CODE_PIPE = "`send(a | b)` waits without a bound."


def test_a_pipe_inside_inline_code_keeps_the_row_at_five_cells() -> None:
    text = FEEDBACK.replace("The send waits without a bound.", CODE_PIPE)
    feedback, problems = check_feedback(NAME, text, FILES.get)
    # The row is read as written; the one problem is the unescaped pipe, not a cell count.
    assert [str(p) for p in problems] == [
        f"{NAME}:10: a '|' inside inline code is not escaped (expected '\\|': Markdown "
        "renderers end the cell there)"
    ]
    assert feedback.findings[0].description == CODE_PIPE
    escaped = FEEDBACK.replace("The send waits without a bound.", CODE_PIPE.replace("|", "\\|"))
    feedback, problems = check_feedback(NAME, escaped, FILES.get)
    assert problems == []
    assert feedback.findings[0].description == CODE_PIPE


@pytest.mark.parametrize(
    ("row", "cells", "loose"),
    [
        ("| a | `b | c` | d |", ("a", "`b | c`", "d"), True),
        ("| a | `b \\| c` | d |", ("a", "`b | c`", "d"), False),
        ("| a | ``b ` | c`` | d |", ("a", "``b ` | c``", "d"), True),
        # An unclosed backtick opens no code span: its pipe ends the cell.
        ("| a | b ` c | d |", ("a", "b ` c", "d"), False),
        ("| a | \\`b | c\\` |", ("a", "\\`b", "c\\`"), False),
        ("| a | b \\|", ("a", "b |"), False),
    ],
)
def test_table_cells_split_outside_code_spans(
    row: str, cells: tuple[str, ...], loose: bool
) -> None:
    [table] = tables(split_lines(f"{row}\n|---|---|---|\n{row}\n"))
    assert table.header == cells
    assert table.rows == ((3, cells),)
    assert table.loose_pipes == ((1, 3) if loose else ())
