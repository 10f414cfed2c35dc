"""split_command is shlex.split, errors included, in linear time; resolve_argv picks argv."""

import random
import shlex

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cc_executor.protocol.argv import SHELL, resolve_argv, split_command
from cc_executor.protocol.errors import InvalidParams
from cc_executor.protocol.params import ExecuteParams

TRICKY = " \t\r\n\x0b\x0c\xa0'\"\\$;`|&*#~(){}a\u00e9"


def shlex_or_error(command: str) -> list[str] | str:
    """shlex's answer: the words, or the text of its error."""
    try:
        return shlex.split(command)
    except ValueError as exc:
        return str(exc)


def ours_or_error(command: str) -> list[str] | str:
    """Our answer in the same form."""
    try:
        return list(split_command(command))
    except InvalidParams as exc:
        return exc.message.removeprefix("Invalid params: ")


@given(st.text(st.sampled_from(TRICKY)))
@example("")
@example("''")
@example('a""b')
@example('"a\\"b"')
@example('"a\\\\"b')
@example('"a\\\nb"')
@example("a\\\nb")
@example("\\")
@example('"abc\\')
@example('"abc\\"')
@example("'abc\\'")
@example("a # comment")
def test_matches_shlex_on_tricky_text(command: str) -> None:
    assert ours_or_error(command) == shlex_or_error(command)


@given(st.text())
def test_matches_shlex_on_any_text(command: str) -> None:
    assert ours_or_error(command) == shlex_or_error(command)


@given(st.lists(st.text(st.sampled_from(TRICKY) | st.characters(exclude_characters="\0"))))
def test_inverts_shlex_join(argv: list[str]) -> None:
    assert list(split_command(shlex.join(argv))) == argv


def double_quote(word: str) -> str:
    """`word` in "...", escaping the two characters that need it there."""
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_multi_megabyte_commands() -> None:
    rng = random.Random(1)
    prompt = "".join(rng.choice(TRICKY) for _ in range(3_000_000))
    argv = ["claude", "-p", prompt, "--output-format", "stream-json"]
    assert split_command(shlex.join(argv)) == tuple(argv)
    assert split_command(" ".join(double_quote(w) for w in argv)) == tuple(argv)
    words = [f"w{i}" for i in range(500_000)]
    assert split_command(" \t".join(words)) == tuple(words)
    assert split_command("\\x" * 1_000_000) == ("x" * 1_000_000,)
    with pytest.raises(InvalidParams, match="No closing quotation"):
        split_command('"' + "ab\\\"'" * 500_000)


def test_resolve_argv() -> None:
    assert resolve_argv(ExecuteParams(argv=("ls", "-l"))) == ("ls", "-l")
    assert resolve_argv(ExecuteParams(command="ls -l 'a b'")) == ("ls", "-l", "a b")
    shell = ExecuteParams(command="echo $HOME | wc", shell=True)
    assert resolve_argv(shell) == (SHELL, "-c", "echo $HOME | wc")


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("echo 'unclosed", "No closing quotation"),
        ("echo trailing\\", "No escaped character"),
        ("'' -l", "names no program"),
    ],
)
def test_resolve_argv_refuses_bad_commands(command: str, reason: str) -> None:
    with pytest.raises(InvalidParams) as info:
        resolve_argv(ExecuteParams(command=command))
    assert info.value.data == [f"{reason} @ $.params.command"]


def test_shell_commands_are_not_split() -> None:
    # The shell does its own parsing; an unbalanced quote is its error to report.
    assert resolve_argv(ExecuteParams(command="echo 'x", shell=True))[2] == "echo 'x"
