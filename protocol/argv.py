"""Command lines to argv: `shlex.split` semantics in linear time.

`shlex` reads one character at a time through a Python state machine: fine for a short
line, far too slow for the multi-MB prompts a `claude -p "..."` command carries. Here one
compiled regex cuts the line into pieces (separators, plain runs, '...' and "..." strings,
backslash escapes), each matched in a single pass with possessive quantifiers (no
backtracking), and a loop joins adjacent pieces into words. The result equals
`shlex.split(command)` (POSIX mode, no comments) for every input, errors included; the
tests check that against shlex itself.
"""

import re

from cc_executor.protocol.errors import InvalidParams
from cc_executor.protocol.params import ExecuteParams

SHELL = "/bin/sh"  # what `shell: true` runs, as `SHELL -c command`

_PIECE = re.compile(
    r"""
    (?P<space>[ \t\r\n]++)                          # shlex's whitespace, and only it
    | (?P<plain>[^ \t\r\n'"\\]++)
    | '(?P<single>[^']*+)'                          # no escapes inside single quotes
    | "(?P<double>(?:[^"\\]++|\\[\s\S])*+)"
    | \\(?P<escaped>[\s\S])                         # outside quotes: the next char, literally
    | (?P<unclosed>[\s\S])                          # an opening quote or a final backslash
    """,
    re.VERBOSE,
)
_WORD = re.compile(r"[^ \t\r\n]+")
_DOUBLE_ENDS_IN_ESCAPE = re.compile(r'"(?:[^"\\]++|\\[\s\S])*+\\\Z')


def _unescape_double(text: str) -> str:
    # In "...", a backslash escapes only `"` and `\`; before anything else it stays. Pairs
    # are read left to right, exactly as str.split finds non-overlapping "\\\\".
    if "\\" not in text:
        return text
    return "\\".join(part.replace('\\"', '"') for part in text.split("\\\\"))


def split_command(command: str) -> tuple[str, ...]:
    """Split a command line into words exactly as `shlex.split(command)` does.

    Raises:
        InvalidParams: an unclosed quote ("No closing quotation") or a final backslash
            ("No escaped character").
    """
    if "'" not in command and '"' not in command and "\\" not in command:
        return tuple(_WORD.findall(command))  # the common case, entirely in C
    words: list[str] = []
    parts: list[str] = []
    in_word = False  # a word has started; it may still be empty, as in ''
    for match in _PIECE.finditer(command):
        kind = match.lastgroup
        if kind == "space":
            if in_word:
                words.append("".join(parts))
                parts.clear()
                in_word = False
            continue
        if kind == "unclosed":
            _raise_unclosed(command, match.start())
        in_word = True
        if kind == "double":
            parts.append(_unescape_double(match["double"]))
        else:
            parts.append(match[kind or ""])
    if in_word:
        words.append("".join(parts))
    return tuple(words)


def _raise_unclosed(command: str, start: int) -> None:
    # shlex names the problem by the state it is in at the end of the input.
    if command[start] == "\\" or _DOUBLE_ENDS_IN_ESCAPE.match(command, start):
        reason = "No escaped character"
    else:
        reason = "No closing quotation"
    raise InvalidParams(f"Invalid params: {reason}", [f"{reason} @ $.params.command"])


def resolve_argv(params: ExecuteParams) -> tuple[str, ...]:
    """The argv to execute for `params`.

    Raises:
        InvalidParams: the command does not split, or names no program.
    """
    if params.argv is not None:
        return params.argv
    assert params.command is not None  # ExecuteParams guarantees exactly one
    if params.shell:
        return (SHELL, "-c", params.command)
    argv = split_command(params.command)
    if not argv or not argv[0]:
        reason = "names no program"
        raise InvalidParams(f"Invalid params: {reason}", [f"{reason} @ $.params.command"])
    return argv
