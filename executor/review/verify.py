"""A prompt's verification commands: the ```verify blocks of `## Graduation & Verification`.

One command per line, split like a shell would (and run without one); `#` lines are comments;
`expect: TEXT` after a command adds a substring its stdout must contain. Pure.
"""

from __future__ import annotations

import shlex

import attrs

from cc_executor.executor.review.markdown import fences, find_section, split_lines
from cc_executor.executor.review.problems import Problem

GRADUATION_SECTION = "Graduation & Verification"
VERIFY_INFO = "verify"


@attrs.frozen
class Verification:
    """One verification command: argv, and substrings its stdout must contain."""

    line: int
    argv: tuple[str, ...]
    expect: tuple[str, ...]


def verifications(name: str, text: str) -> tuple[list[Verification], list[Problem]]:
    """The commands of the ```verify blocks in Graduation & Verification."""
    section = find_section(split_lines(text), 2, GRADUATION_SECTION)
    if section is None:
        return [], [Problem(name, 1, f"no '## {GRADUATION_SECTION}' section")]
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
