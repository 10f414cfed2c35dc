"""Where a converter path (`$.fixes[1].line`) is in a JSON text, for problems' line numbers.

Pure: text and a path in, a 1-based line out; a path it cannot place gets the nearest line it
can (its parent's), never an error.
"""

from __future__ import annotations

import re

import attrs


@attrs.define
class _Container:
    """An object or array being read: its path, the next element's index, the pending key."""

    path: str
    is_object: bool
    index: int = 0
    key: str | None = None


def value_lines(text: str) -> dict[str, int]:
    """The line each value of a JSON text starts on, by converter path (`$.fixes[1].line`).

    A member is placed at its key's line. Reads the text's structure (brackets, commas,
    strings with their escapes) without decoding it; a text that is not JSON gives a partial
    answer, never an error.
    """
    found: dict[str, int] = {}
    open_: list[_Container] = []
    line, i = 1, 0

    def here() -> str:
        if not open_:
            return "$"
        top = open_[-1]
        return f"{top.path}.{top.key}" if top.is_object else f"{top.path}[{top.index}]"

    while i < len(text):
        char = text[i]
        top = open_[-1] if open_ else None
        if char == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if top is not None and top.is_object and top.key is None:
                top.key = text[i + 1 : end]
            found.setdefault(here(), line)
            line += text.count("\n", i, end)
            i = end + 1
            continue
        if char in "{[":
            found.setdefault(here(), line)
            open_.append(_Container(here(), is_object=char == "{"))
        elif char in "}]":
            if open_:
                open_.pop()
        elif char == "," and top is not None:
            top.index += 1
            top.key = None
        elif char == "\n":
            line += 1
        elif char not in " \t\r:":
            found.setdefault(here(), line)  # a number, true, false or null
        i += 1
    return found


def json_line(text: str, path: str) -> int:
    """The line of the JSON text a converter path points at, or of its nearest parent there."""
    found = value_lines(text)
    while path not in found and path != "$":
        path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) or "$"
    return found.get(path, 1)
