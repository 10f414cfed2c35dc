"""The naming rule of review artifacts: `{SEQUENCE}_{FOCUS_AREA}_{TYPE}.{ext}` in `reviews/`.

Owns what a sequence, a focus area and a type are, and which sequence comes next. Pure: a
name in, an `ArtifactName` or a `Problem` (at line 1) out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import attrs

from cc_executor.executor.review.problems import Problem

ArtifactType = Literal["review_feedback", "fixes"]
EXTENSION: Mapping[str, str] = {"review_feedback": "md", "fixes": "json"}
NAME = re.compile(r"^(?P<seq>\d+)_(?P<focus>.+?)_(?P<type>review_feedback|fixes)\.(?P<ext>\w+)$")
FOCUS = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
# A focus area names the technical challenge (`websocket_backpressure`), so words that say
# nothing about it cannot make one up on their own.
_GENERIC = """
    review reviews feedback fix fixes general misc miscellaneous various code changes change
    update updates issue issues stuff cleanup round first second third final todo new old
    test tests all other
"""
GENERIC_WORDS = frozenset(_GENERIC.split())


@attrs.frozen
class ArtifactName:
    sequence: int
    focus_area: str
    type: ArtifactType

    @property
    def review_id(self) -> str:
        return f"{self.sequence:03d}_{self.focus_area}"

    def file_name(self) -> str:
        return f"{self.review_id}_{self.type}.{EXTENSION[self.type]}"


def check_focus_area(focus: str) -> str | None:
    """None when `focus` is a valid focus area, else what is wrong with it."""
    if not FOCUS.match(focus):
        return (
            f"focus area {focus!r} is not snake_case of at least two words "
            "(expected e.g. websocket_backpressure)"
        )
    if all(word in GENERIC_WORDS for word in focus.split("_")):
        return (
            f"focus area {focus!r} names no technical challenge "
            "(expected e.g. process_tree_cancellation)"
        )
    return None


def parse_name(name: str) -> ArtifactName | Problem:
    """`{SEQUENCE}_{FOCUS_AREA}_{TYPE}.{ext}` or a problem with it (at line 1)."""
    expected = (
        "expected {SEQUENCE}_{FOCUS_AREA}_{TYPE}.{ext}, e.g. 001_websocket_backpressure_fixes.json"
    )
    match = NAME.match(name)
    if not match:
        return Problem(name, 1, f"file name does not follow the naming rule ({expected})")
    if not re.fullmatch(r"\d{3}", match["seq"]):
        return Problem(name, 1, f"sequence {match['seq']!r} is not 3 digits (expected e.g. 001)")
    if match["seq"] == "000":
        return Problem(name, 1, "sequence 000 is not allowed (sequences start at 001)")
    trouble = check_focus_area(match["focus"])
    if trouble:
        return Problem(name, 1, trouble)
    kind: ArtifactType = "fixes" if match["type"] == "fixes" else "review_feedback"
    if match["ext"] != EXTENSION[kind]:
        return Problem(name, 1, f"a {kind} file ends in .{EXTENSION[kind]}, not .{match['ext']}")
    return ArtifactName(int(match["seq"]), match["focus"], kind)


def next_sequence(names: list[str]) -> int:
    """The first sequence after every sequence used by a well-formed artifact name."""
    used = [n.sequence for n in map(parse_name, names) if isinstance(n, ArtifactName)]
    return max(used, default=0) + 1
