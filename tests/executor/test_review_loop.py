"""`ccx review loop` end to end: scripted reviewer and implementer run through a live daemon."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import trio
from ccx_testing import Served

from cc_executor.executor.client import open_connection
from cc_executor.executor.review.loop import LoopResult, LoopSettings, run_loop

TIMEOUT = 60
MARKER = "USAGE_fake_20250101T000000.000000Z"
FAKE_DEMOS = (("fake", (sys.executable, "-c", f"print({MARKER!r})")),)

# The reviewer: MODE is `invalid`, `two_fixes`, `clean`, or `fail`; the loop's placeholders
# give it the sequence and the folder, its environment the execution log.
REVIEWER = r"""
import json, os, sys
mode, sequence, reviews = sys.argv[1], sys.argv[2], sys.argv[3]
if os.path.exists("clean-next"):
    mode = "clean"
if mode == "fail":
    print("reviewer gave up", file=sys.stderr)
    sys.exit(4)
log = open(os.environ["REVIEW_EXECUTION_LOG"]).read()
assert os.environ["REVIEW_SEQUENCE"] == sequence
assert os.path.exists(os.environ["REVIEW_REQUEST"])
review_id = f"{sequence}_pipe_buffering"
rows, fixes, checklist = [], [], []
if mode in ("two_fixes", "invalid"):
    severity = "HIGH" if mode == "invalid" else "MAJOR"
    rows = [f"| 1 | `src/app.py:3` | {severity} | Unbounded buffer. | Bound it. |",
            "| 2 | `src/app.py:7` | MINOR | Stale comment. | Fix it. |"]
    fixes = [
        {"id": 1, "severity": "major", "file": "src/app.py", "line": 3, "issue": "unbounded",
         "fix": "bound it", "verification": "python -m pytest"},
        {"id": 2, "severity": "minor", "file": "src/app.py", "line": 7, "issue": "stale",
         "fix": "fix it", "verification": "read it"},
    ]
    checklist = ["- [ ] #1 bound the buffer", "- [ ] #2 fix the comment"]
    open("clean-next", "w").close()
feedback = "\n".join([
    f"# Review {sequence}", "", "## Summary", "Scripted review.", "",
    "## Detailed Findings",
    "| # | Location | Severity | Description | Explicit Fix Directive |",
    "|---|---|---|---|---|", *rows, "",
    "## Usage Function Execution Log", log, "",
    "## Scorecard", "| Area | Score |", "|---|---|", "| Correctness | 7 |", "",
    "## Claude-Fix Checklist", *(checklist or ["None."]), "",
    "## Recommended Next Action", "Apply the fixes.", "",
])
with open(os.path.join(reviews, f"{review_id}_review_feedback.md"), "w") as f:
    f.write(feedback)
with open(os.path.join(reviews, f"{review_id}_fixes.json"), "w") as f:
    json.dump({"review_id": review_id, "component": "app", "date": "2025-01-01",
               "fixes": fixes}, f, indent=2, sort_keys=True)
print("reviewed", review_id)
"""

# The implementer appends the fix it was handed to implemented.jsonl.
IMPLEMENTER = r"""
import json, os, sys
fix = json.load(open(sys.argv[1]))
assert os.environ["REVIEW_FIX_ID"] == str(fix["id"])
with open("implemented.jsonl", "a") as f:
    f.write(json.dumps({"id": fix["id"], "file": fix["file"], "review": fix["review_id"]}) + "\n")
print("implemented fix", fix["id"], flush=True)
print("a note on stderr", file=sys.stderr, flush=True)
print("done", flush=True)
"""


def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("".join(f"line = {i}\n" for i in range(1, 11)))
    (root / "reviewer.py").write_text(REVIEWER)
    (root / "implementer.py").write_text(IMPLEMENTER)
    return root


async def loop(served: Served, root: Path, mode: str, rounds: int = 3) -> LoopResult:
    settings = LoopSettings(
        reviewer=(sys.executable, "reviewer.py", mode, "{sequence}", "{reviews}"),
        implementer=(sys.executable, "implementer.py", "{fix}"),
        root=root,
        reviews=root / "reviews",
        rounds=rounds,
        timeout=TIMEOUT,
        demos=FAKE_DEMOS,
    )
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            return await run_loop(conn, settings)


async def test_invalid_review_is_caught_and_nothing_is_implemented(
    served: Served, tmp_path: Path
) -> None:
    root = workspace(tmp_path)
    result = await loop(served, root, "invalid")
    assert result.outcome == "invalid"
    assert [str(p) for p in result.problems] == [
        "reviews/001_pipe_buffering_review_feedback.md:9: severity 'HIGH' (expected one of "
        "BLOCKER, MAJOR, MINOR, NIT)"
    ]
    assert not (root / "implemented.jsonl").exists()
    validation = (root / "reviews" / "rounds" / "001" / "validation.txt").read_text()
    assert "severity 'HIGH'" in validation


async def test_two_fixes_two_implementer_runs_then_a_clean_review(
    served: Served, tmp_path: Path
) -> None:
    root = workspace(tmp_path)
    result = await loop(served, root, "two_fixes")
    assert result.outcome == "clean"
    assert [r.review_id for r in result.rounds] == ["001_pipe_buffering", "002_pipe_buffering"]
    implemented = [
        orjson.loads(line) for line in (root / "implemented.jsonl").read_text().splitlines()
    ]
    assert implemented == [
        {"id": 1, "file": "src/app.py", "review": "001_pipe_buffering"},
        {"id": 2, "file": "src/app.py", "review": "001_pipe_buffering"},
    ]
    # The implementer is handed the fix as validated (the schema's fields, in its order), not
    # the reviewer's text read again: this reviewer sorts its keys.
    assert (root / "reviews" / "rounds" / "001" / "fix-1.json").read_bytes() == orjson.dumps(
        {
            "review_id": "001_pipe_buffering",
            "id": 1,
            "severity": "major",
            "file": "src/app.py",
            "line": 3,
            "issue": "unbounded",
            "fix": "bound it",
            "verification": "python -m pytest",
        },
        option=orjson.OPT_INDENT_2,
    )
    first = result.rounds[0]
    assert [(e.outcome, e.exit_code) for e in first.implementer] == [("exited", 0)] * 2
    assert first.demos_passed is True
    saved = root / "reviews" / "rounds" / "001"
    assert sorted(p.name for p in saved.iterdir()) == [
        "execution_log.md",
        "execution_log_after.md",
        "fix-1.json",
        "fix-2.json",
        "implementer-1.log",
        "implementer-1.stderr.log",
        "implementer-2.log",
        "implementer-2.stderr.log",
        "request.md",
        "reviewer.log",
        "reviewer.stderr.log",
        "round.json",
    ]
    assert MARKER in (saved / "execution_log.md").read_text()
    # stdout and stderr are kept apart, each whole.
    assert (saved / "implementer-2.log").read_text() == "implemented fix 2\ndone\n"
    assert (saved / "implementer-2.stderr.log").read_text() == "a note on stderr\n"
    assert (saved / "reviewer.log").read_text() == "reviewed 001_pipe_buffering\n"
    assert (saved / "reviewer.stderr.log").read_text() == ""
    summary = orjson.loads((saved / "round.json").read_text())
    assert [run["exit_code"] for run in summary["implementer"]] == [0, 0]
    # The second round reviewed the demos' re-run, and its review is the clean one.
    assert (root / "reviews" / "rounds" / "002" / "execution_log.md").read_text() == (
        saved / "execution_log_after.md"
    ).read_text()
    clean = orjson.loads((root / "reviews" / "002_pipe_buffering_fixes.json").read_text())
    assert clean["fixes"] == []


async def test_a_failing_reviewer_stops_the_loop(served: Served, tmp_path: Path) -> None:
    root = workspace(tmp_path)
    result = await loop(served, root, "fail")
    assert result.outcome == "reviewer_failed"
    # The problem points at the reviewer's stderr, where its message is.
    assert [str(p) for p in result.problems] == [
        "reviews/rounds/001/reviewer.stderr.log:1: the reviewer ended exited with exit code 4 "
        "(expected exit code 0)"
    ]
    saved = root / "reviews" / "rounds" / "001"
    assert (saved / "reviewer.stderr.log").read_text() == "reviewer gave up\n"
    assert (saved / "reviewer.log").read_text() == ""


async def test_rounds_run_out(served: Served, tmp_path: Path) -> None:
    root = workspace(tmp_path)
    result = await loop(served, root, "two_fixes", rounds=1)
    assert result.outcome == "rounds_exhausted"
    assert len(result.rounds) == 1
    assert len(result.rounds[0].implementer) == 2
