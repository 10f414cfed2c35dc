"""CI for the project's own review artifacts: reviews/ and prompts/ pass their validators.

A hand-edited metric, a finding pointing past the end of its file, a fixes file that
disagrees with its feedback, a broken record chain: any of them fails `./dev check` here.
"""

from __future__ import annotations

from pathlib import Path

from cc_executor.executor.review.artifacts import check_prompts, check_reviews
from cc_executor.executor.review.chain import parse_record

ROOT = Path(__file__).resolve().parents[1]


def test_reviews_are_valid() -> None:
    assert [str(p) for p in check_reviews(ROOT / "reviews", ROOT)] == []
    assert any((ROOT / "reviews").glob("[0-9][0-9][0-9]_*_review_feedback.md"))


def test_prompts_are_valid_and_backed_by_records() -> None:
    assert [str(p) for p in check_prompts(ROOT / "prompts", ROOT)] == []
    prompts = [p for p in (ROOT / "prompts").glob("*.md") if "TEMPLATE" not in p.name]
    assert {p.stem for p in prompts} >= {
        "protocol_codec",
        "supervision_process_tree",
        "session_backpressure",
        "security_policy",
        "review_artifacts",
    }
    for prompt in prompts:
        record = ROOT / "prompts" / ".records" / f"{prompt.stem}.jsonl"
        assert record.is_file(), f"{prompt.name} has no record (run: ccx prompts record)"
        entries, problems = parse_record(str(record), record.read_text(), prompt.stem)
        assert problems == []
        assert entries, f"{prompt.name} has no recorded execution"
