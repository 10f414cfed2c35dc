"""Checking the artifacts on disk: a `reviews/` folder, a feedback/fixes pair, `prompts/`.

The I/O around the pure checks of `formats` and `prompts`: it reads the files, tells the
checks how long the repository's files are, and names every file relative to the root.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from cc_executor.executor.review.chain import Entry, parse_record
from cc_executor.executor.review.feedback import LineCount, check_feedback
from cc_executor.executor.review.fixes import FixesFile, parse_fixes
from cc_executor.executor.review.names import ArtifactName, parse_name
from cc_executor.executor.review.pair import check_pair
from cc_executor.executor.review.problems import Problem
from cc_executor.executor.review.prompts import check_prompt

# Files of a reviews/ or prompts/ folder that are not artifacts.
NOT_ARTIFACTS = frozenset({"README.md"})
TEMPLATE = "SELF_IMPROVING_PROMPT_TEMPLATE.md"


def shown(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def line_counter(root: Path) -> LineCount:
    """Line counts of the repository's files; None for a missing file or one outside `root`."""
    base = root.resolve()

    def count(relative: str) -> int | None:
        path = (base / relative).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return None
        with path.open("rb") as f:
            data = f.read()
        return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)

    return count


def check_review_pair(feedback: Path, fixes: Path, root: Path) -> list[Problem]:
    """One review: its feedback file, its fixes file, and their agreement."""
    _, problems = read_review_pair(feedback, fixes, root)
    return problems


def read_review_pair(
    feedback: Path, fixes: Path, root: Path
) -> tuple[FixesFile | None, list[Problem]]:
    """`check_review_pair`, also returning the fixes as structured (None if they could not be)."""
    problems: list[Problem] = []
    feedback_name, fixes_name = shown(feedback, root), shown(fixes, root)
    name = parse_name(feedback.name)
    if isinstance(name, Problem):
        return None, [Problem(feedback_name, name.line, name.message)]
    parsed, more = check_feedback(feedback_name, feedback.read_text(), line_counter(root))
    problems += more
    if not fixes.is_file():
        return None, [
            *problems,
            Problem(
                fixes_name,
                1,
                f"missing: every review has a fixes file "
                f"(expected {fixes.name} beside {feedback.name})",
            ),
        ]
    fixes_text = fixes.read_text()
    structured, more = parse_fixes(fixes_name, fixes_text)
    problems += more
    if structured is not None:
        problems += check_pair(
            feedback_name, parsed, fixes_name, fixes_text, structured, name.review_id
        )
    return structured, problems


def check_reviews(folder: Path, root: Path) -> list[Problem]:
    """Every file of a reviews folder follows the naming rule and comes in a valid pair."""
    problems: list[Problem] = []
    groups: dict[str, dict[str, Path]] = defaultdict(dict)
    by_sequence: dict[int, set[str]] = defaultdict(set)
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir() or path.name in NOT_ARTIFACTS:
            continue
        name = parse_name(path.name)
        if isinstance(name, Problem):
            problems.append(Problem(shown(path, root), name.line, name.message))
            continue
        groups[name.review_id][name.type] = path
        by_sequence[name.sequence].add(name.focus_area)
    for sequence, areas in sorted(by_sequence.items()):
        if len(areas) > 1:
            problems.append(
                Problem(
                    shown(folder, root),
                    1,
                    f"sequence {sequence:03d} is used by "
                    f"{len(areas)} focus areas ({', '.join(sorted(areas))}); "
                    "expected one review per sequence",
                )
            )
    for review_id, files in sorted(groups.items()):
        if "review_feedback" not in files:
            fixes = files["fixes"]
            want = fixes.name.replace("_fixes.json", "_review_feedback.md")
            problems.append(
                Problem(
                    shown(fixes, root), 1, f"fixes without feedback (expected {want} beside it)"
                )
            )
            continue
        feedback = files["review_feedback"]
        fixes = files.get(
            "fixes", folder / ArtifactName(int(review_id[:3]), review_id[4:], "fixes").file_name()
        )
        problems += check_review_pair(feedback, fixes, root)
    return problems


def record_path(prompt: Path) -> Path:
    return prompt.parent / ".records" / f"{prompt.stem}.jsonl"


def record_name(prompt: Path) -> str:
    """How the prompt names its record: relative to the prompt's folder."""
    return f".records/{prompt.stem}.jsonl"


def load_record(prompt: Path, root: Path) -> tuple[list[Entry], list[Problem]]:
    """The prompt's record, chain-checked (no record: no entries); entries up to a break."""
    record = record_path(prompt)
    if not record.is_file():
        return [], []
    return parse_record(shown(record, root), record.read_text(), prompt.stem)


def check_prompt_file(prompt: Path, root: Path) -> list[Problem]:
    entries, problems = load_record(prompt, root)
    if problems:  # a broken chain: the metrics cannot be trusted, so say only that
        return problems
    return check_prompt(shown(prompt, root), prompt.read_text(), entries, record_name(prompt))


def check_prompts(folder: Path, root: Path) -> list[Problem]:
    """Every prompt of a prompts folder, the template included; no record without a prompt."""
    problems: list[Problem] = []
    prompts = sorted(p for p in folder.glob("*.md") if p.name not in NOT_ARTIFACTS)
    if not any(p.name == TEMPLATE for p in prompts):
        problems.append(Problem(shown(folder, root), 1, f"no {TEMPLATE} in the prompts folder"))
    for prompt in prompts:
        problems += check_prompt_file(prompt, root)
    stems = {p.stem for p in prompts}
    records = folder / ".records"
    if records.is_dir():
        for record in sorted(records.glob("*.jsonl")):
            if record.stem not in stems:
                problems.append(
                    Problem(
                        shown(record, root),
                        1,
                        f"a record without a prompt "
                        f"(expected {record.stem}.md in {shown(folder, root)})",
                    )
                )
    return problems
