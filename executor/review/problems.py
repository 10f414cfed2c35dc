"""What every check returns, and the one structural rule feedback and prompts share.

A `Problem` is one thing wrong with an artifact — file, line, what is wrong and what was
expected — and prints as `file:line: message`. `heading_problems` is the rule of a document
made of fixed `##` sections: exactly these, each once, in this order. Pure.
"""

from __future__ import annotations

import attrs

from cc_executor.executor.review.markdown import Section


@attrs.frozen
class Problem:
    """One thing wrong with an artifact; `str()` is `file:line: message`."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def heading_problems(name: str, found: list[Section], expected: tuple[str, ...]) -> list[Problem]:
    """The `##` sections `found` are exactly `expected`, each once, in order."""
    problems: list[Problem] = []
    titles = [s.title for s in found]
    for s in found:
        if s.title not in expected:
            problems.append(
                Problem(
                    name,
                    s.line,
                    f"unexpected section '## {s.title}' (expected only: {', '.join(expected)})",
                )
            )
    for title in expected:
        if title not in titles:
            problems.append(Problem(name, _end_line(found), f"missing section '## {title}'"))
        elif titles.count(title) > 1:
            again = [s for s in found if s.title == title][1]
            problems.append(Problem(name, again.line, f"section '## {title}' appears twice"))
    known = [s for s in found if s.title in expected]
    order = [expected.index(s.title) for s in known]
    for i in range(1, len(known)):
        s, index, prev = known[i], order[i], order[i - 1]
        if index < prev:
            problems.append(
                Problem(
                    name,
                    s.line,
                    f"section '## {s.title}' is out of order "
                    f"(expected order: {', '.join(expected)})",
                )
            )
            break
    return problems


def _end_line(found: list[Section]) -> int:
    if not found:
        return 1
    last = found[-1]
    return last.body[-1].number if last.body else last.line
