"""Just enough Markdown for the review formats: headings, pipe tables, fences, list items.

Pure: text in, values out. Line numbers are 1-based, as editors and `file:line` show them.
Headings and tables inside fenced code blocks are content, not structure: a pasted stdout
containing `## ` must not open a section.
"""

from __future__ import annotations

import re

import attrs

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})(.*)$")


@attrs.frozen
class Line:
    """One line of a document and its 1-based number."""

    number: int
    text: str


@attrs.frozen
class Section:
    """A heading and the lines up to the next heading of the same or a higher level."""

    level: int
    title: str
    line: int
    body: tuple[Line, ...]

    def text(self) -> str:
        return "\n".join(line.text for line in self.body)

    def content_lines(self) -> list[Line]:
        """Non-blank lines, HTML comments excluded."""
        return [ln for ln in self.body if ln.text.strip() and not _is_comment(ln.text)]


@attrs.frozen
class Fence:
    """A fenced code block: its info string and content lines."""

    info: str
    line: int
    lines: tuple[Line, ...]


@attrs.frozen
class Table:
    """A pipe table: header cells and rows, each row with its line number.

    `loose_pipes` are the lines (header or row) with a `|` inside inline code that is not
    written `\\|`: read here as part of the code, but GitHub-flavoured renderers end the cell
    there, so the checks report it.
    """

    line: int
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]
    loose_pipes: tuple[int, ...] = ()


def _is_comment(text: str) -> bool:
    stripped = text.strip()
    return stripped.startswith("<!--") and stripped.endswith("-->")


def structural_lines(lines: tuple[Line, ...] | list[Line]) -> list[tuple[Line, bool]]:
    """Each line with whether it is outside any fenced block (fence lines count as inside)."""
    out: list[tuple[Line, bool]] = []
    fence: str | None = None
    for line in lines:
        match = _FENCE.match(line.text)
        if fence is None:
            if match:
                fence = match.group(1)
                out.append((line, False))
            else:
                out.append((line, True))
        else:
            out.append((line, False))
            if (
                match
                and match.group(1)[0] == fence[0]
                and len(match.group(1)) >= len(fence)
                and not match.group(2).strip()
            ):
                fence = None
    return out


def split_lines(text: str) -> tuple[Line, ...]:
    return tuple(Line(i, t) for i, t in enumerate(text.split("\n"), start=1))


def sections(lines: tuple[Line, ...], level: int) -> tuple[list[Line], list[Section]]:
    """Split at headings of exactly `level` (outside fences): (preamble, sections)."""
    preamble: list[Line] = []
    found: list[tuple[str, int, list[Line]]] = []
    for line, structural in structural_lines(lines):
        match = _HEADING.match(line.text) if structural else None
        if match and len(match.group(1)) == level:
            found.append((match.group(2), line.number, []))
        elif match and len(match.group(1)) < level:
            # A higher heading ends the current section; its lines belong to nobody here.
            found.append(("", -1, []))
        elif found:
            found[-1][2].append(line)
        else:
            preamble.append(line)
    return preamble, [Section(level, t, n, tuple(b)) for t, n, b in found if n != -1]


def find_section(lines: tuple[Line, ...], level: int, title: str) -> Section | None:
    """The first section of `level` titled `title` (outside fences), if any."""
    _, found = sections(lines, level)
    return next((s for s in found if s.title == title), None)


def fences(lines: tuple[Line, ...] | list[Line]) -> list[Fence]:
    """The fenced code blocks among `lines`."""
    blocks: list[Fence] = []
    current: tuple[str, int, list[Line]] | None = None
    closing = ""
    for line in lines:
        match = _FENCE.match(line.text)
        if current is None:
            if match:
                current = (match.group(2).strip(), line.number, [])
                closing = match.group(1)
        elif (
            match
            and match.group(1)[0] == closing[0]
            and len(match.group(1)) >= len(closing)
            and not match.group(2).strip()
        ):
            blocks.append(Fence(current[0], current[1], tuple(current[2])))
            current = None
        else:
            current[2].append(line)
    return blocks


def _code_span_end(text: str, start: int, ticks: int) -> int | None:
    """Where the code span opened by `ticks` backticks at `start` closes (after its run)."""
    i = start + ticks
    while (i := text.find("`" * ticks, i)) != -1:
        run = len(text) - len(text[i:].lstrip("`"))
        if run - i == ticks:
            return run
        i = run
    return None


def _cells(text: str) -> tuple[tuple[str, ...], bool]:
    """A row's cells, split on the pipes outside code spans; and whether a span held a bare `|`.

    `\\|` is a pipe in a cell wherever it stands (inside code too); other escapes stay as
    written. A backtick run opens a code span only if a run of the same length closes it.
    """
    body = text.strip()
    cells: list[str] = []
    cell: list[str] = []
    loose = False
    i = 1 if body.startswith("|") else 0
    closed = False  # whether the last character read was a cell-ending pipe
    while i < len(body):
        closed = False
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            cell.append("|" if body[i + 1] == "|" else body[i : i + 2])
            i += 2
        elif char == "`":
            ticks = len(body[i:]) - len(body[i:].lstrip("`"))
            end = _code_span_end(body, i, ticks)
            span = body[i : end if end is not None else i + ticks]
            loose = loose or "|" in span.replace("\\|", "")
            cell.append(span.replace("\\|", "|"))
            i += len(span)
        elif char == "|":
            cells.append("".join(cell))
            cell = []
            closed = True
            i += 1
        else:
            cell.append(char)
            i += 1
    if not closed or not cells:
        cells.append("".join(cell))
    return tuple(c.strip() for c in cells), loose


_DELIMITER = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def tables(lines: tuple[Line, ...] | list[Line]) -> list[Table]:
    """The pipe tables among `lines` (outside fences): a header, a delimiter row, rows."""
    found: list[Table] = []
    usable = [line for line, structural in structural_lines(lines) if structural]
    i = 0
    while i < len(usable):
        line = usable[i]
        if (
            line.text.lstrip().startswith("|")
            and i + 1 < len(usable)
            and usable[i + 1].number == line.number + 1
            and _DELIMITER.match(usable[i + 1].text)
        ):
            header, loose = _cells(line.text)
            loose_pipes = [line.number] if loose else []
            rows: list[tuple[int, tuple[str, ...]]] = []
            j = i + 2
            while (
                j < len(usable)
                and usable[j].text.lstrip().startswith("|")
                and usable[j].number == usable[j - 1].number + 1
            ):
                cells, loose = _cells(usable[j].text)
                rows.append((usable[j].number, cells))
                loose_pipes += [usable[j].number] if loose else []
                j += 1
            found.append(Table(line.number, header, tuple(rows), tuple(loose_pipes)))
            i = j
        else:
            i += 1
    return found


def longest_backtick_run(text: str) -> int:
    runs = re.findall(r"`+", text)
    return max((len(r) for r in runs), default=0)


def fenced(text: str, info: str = "text") -> str:
    """`text` in a fence longer than any backtick run inside it."""
    fence = "`" * max(3, longest_backtick_run(text) + 1)
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{fence}{info}\n{body}{fence}"
