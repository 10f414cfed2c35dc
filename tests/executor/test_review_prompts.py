"""Self-improving prompts: the template's structure, verify blocks, and metrics from a record."""

from __future__ import annotations

from pathlib import Path

import attrs

from cc_executor.executor.review.chain import (
    CommandResult,
    Entry,
    digest_of,
    entry_line,
    new_entry,
    parse_record,
)
from cc_executor.executor.review.metrics import apply_record
from cc_executor.executor.review.prompts import check_prompt
from cc_executor.executor.review.verify import verifications

TEMPLATE = (Path(__file__).parents[2] / "prompts" / "SELF_IMPROVING_PROMPT_TEMPLATE.md").read_text()
NAME = "demo.md"
RECORD = ".records/SELF_IMPROVING_PROMPT_TEMPLATE.jsonl"


def ok(argv: tuple[str, ...] = ("python", "-m", "x"), exit_code: int = 0) -> CommandResult:
    return CommandResult(argv, "run1", exit_code, "exited", 0.5, ("X",), ())


def chain(*results: list[CommandResult]) -> list[Entry]:
    entries: list[Entry] = []
    for i, commands in enumerate(results):
        entries.append(new_entry(entries, f"2025-01-0{i + 1}T10:00:00Z", "demo", commands))
    return entries


def problems(text: str, entries: list[Entry] | None = None) -> list[str]:
    return [str(p) for p in check_prompt(NAME, text, entries or [], RECORD)]


def test_the_template_is_a_valid_prompt() -> None:
    assert problems(TEMPLATE) == []


def test_verify_block_commands_and_expectations() -> None:
    found, trouble = verifications(NAME, TEMPLATE)
    assert trouble == []
    assert [(v.argv, v.expect) for v in found] == [
        (("python", "-m", "cc_executor.protocol.usage"), ("USAGE_protocol_",))
    ]


def test_recorded_metrics_are_written_and_then_valid() -> None:
    entries = chain([ok()], [ok(exit_code=1)], [ok(), ok()])
    text = apply_record(TEMPLATE, entries, RECORD)
    assert isinstance(text, str)
    assert "- **Success/Failure Ratio**: 2:1" in text
    assert "- **Total Executions**: 3" in text
    assert "- **Last Updated**: 2025-01-03" in text
    assert f"(head `{entries[-1].digest[:12]}`)" in text
    assert "| 2 | 2025-01-02T10:00:00Z | 0/1 passed | FAILURE |" in text
    assert problems(text, entries) == []
    # Applying it again changes nothing.
    assert apply_record(text, entries, RECORD) == text


def test_hand_edited_counts_are_caught() -> None:
    entries = chain([ok()], [ok(exit_code=1)])
    text = apply_record(TEMPLATE, entries, RECORD)
    assert isinstance(text, str)
    edited = text.replace("- **Success/Failure Ratio**: 1:1", "- **Success/Failure Ratio**: 2:0")
    assert problems(edited, entries) == [
        f"{NAME}:12: Success/Failure Ratio says '2:0' but the record says '1:1' (metrics come "
        "only from `ccx prompts record`)"
    ]
    log_edit = text.replace("| 0/1 passed | FAILURE |", "| 1/1 passed | SUCCESS |")
    [problem] = problems(log_edit, entries)
    assert problem.startswith(f"{NAME}:28: execution log row '| 2 | 2025-01-02T10:00:00Z | 1/1")


def test_record_chain_detects_edits_removals_and_flips() -> None:
    entries = chain([ok()], [ok(exit_code=1)], [ok()])
    lines = [entry_line(e) for e in entries]
    good, trouble = parse_record("r.jsonl", "\n".join(lines) + "\n", "demo")
    assert (good, trouble) == (entries, [])

    _, trouble = parse_record("r.jsonl", "\n".join([lines[0], lines[2]]), "demo")
    assert [str(p) for p in trouble] == ["r.jsonl:2: entry number 3 (expected 2)"]

    flipped = entry_line(attrs.evolve(entries[1], success=True))
    _, trouble = parse_record("r.jsonl", "\n".join([lines[0], flipped]), "demo")
    assert str(trouble[0]).startswith("r.jsonl:2: entry 2: digest ")
    assert str(trouble[0]).endswith("the entry was edited")

    resealed = attrs.evolve(entries[1], success=True)
    resealed = attrs.evolve(resealed, digest=digest_of(resealed))
    _, trouble = parse_record("r.jsonl", "\n".join([lines[0], entry_line(resealed)]), "demo")
    assert [str(p) for p in trouble] == [
        "r.jsonl:2: entry 2: success=True contradicts its commands' results"
    ]

    swapped = attrs.evolve(entries[2], n=2)
    swapped = attrs.evolve(swapped, digest=digest_of(swapped))
    _, trouble = parse_record("r.jsonl", "\n".join([lines[0], entry_line(swapped)]), "demo")
    assert "does not chain to the entry before it" in str(trouble[0])

    _, trouble = parse_record("r.jsonl", "{oops", "demo")
    assert str(trouble[0]).startswith("r.jsonl:1: unreadable record entry")


def test_truncated_record_no_longer_matches_the_prompt() -> None:
    entries = chain([ok()], [ok()])
    text = apply_record(TEMPLATE, entries, RECORD)
    assert isinstance(text, str)
    assert any("Success/Failure Ratio says '2:0'" in p for p in problems(text, entries[:1]))


def test_template_deviations() -> None:
    no_recovery = TEMPLATE.split("### Recovery Test 2")[0]
    assert problems(no_recovery) == [
        f"{NAME}:50: 1 recovery test(s) (expected at least 3 '### Recovery Test N: ...' "
        "subsections)"
    ]
    swapped = (
        TEMPLATE.replace("## Architect's Briefing", "## X")
        .replace("## Implementer's Workspace", "## Architect's Briefing")
        .replace("## X", "## Implementer's Workspace")
    )
    assert problems(swapped) == [
        f"{NAME}:32: section '## Architect's Briefing' is out of order (expected order: Task "
        "Metrics & History, Architect's Briefing, Implementer's Workspace, Graduation & "
        "Verification, Diagnostics & Recovery)"
    ]
    no_prediction = TEMPLATE.replace("**Prediction**: what", "what")
    assert problems(no_prediction) == [
        f"{NAME}:35: no prediction (expected a line '**Prediction**: what the verification "
        "will show')"
    ]
    no_verify = TEMPLATE.replace("```verify", "```sh")
    assert problems(no_verify) == [
        f"{NAME}:35: no ```verify block (expected one command per line, optionally followed "
        "by 'expect: TEXT' lines)"
    ]
    stray_expect = TEMPLATE.replace("```verify\npython", "```verify\nexpect: nothing\npython")
    assert problems(stray_expect) == [
        f"{NAME}:46: 'expect:' before any command (expected it after the command it checks)"
    ]
    no_evolution = TEMPLATE.replace("### Evolution History", "### History")
    assert problems(no_evolution) == [f"{NAME}:11: no '### Evolution History' subsection"]
    no_title = TEMPLATE.replace("# <Component>", "<Component>", 1)
    assert problems(no_title) == [f"{NAME}:1: no title (expected '# <prompt name>' first)"]
