"""The strict converter refuses every coercion cattrs would make by default."""

from typing import Any, Literal

import attrs
import orjson
import pytest

from cc_executor.protocol.claude import ClaudeParams, ClaudePermissionParams, ClaudeSendParams
from cc_executor.protocol.converter import converter, structure_params
from cc_executor.protocol.errors import InvalidParams
from cc_executor.protocol.params import ExecuteParams, unstructure_params


@attrs.frozen
class Sample:
    """One field of each kind the protocol uses."""

    i: int = 0
    f: float = 0.0
    b: bool = False
    s: str = ""
    t: tuple[str, ...] = ()
    ls: list[int] = attrs.field(factory=list)
    d: dict[str, str] = attrs.field(factory=dict)
    lit: Literal["a", "b"] = "a"
    opt: int | None = None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"i": 7}, Sample(i=7)),
        ({"i": -(2**63)}, Sample(i=-(2**63))),
        ({"f": 7}, Sample(f=7.0)),
        ({"f": 0.5}, Sample(f=0.5)),
        ({"b": True}, Sample(b=True)),
        ({"s": ""}, Sample(s="")),
        ({"t": ["rm", "-rf"]}, Sample(t=("rm", "-rf"))),
        ({"t": []}, Sample()),
        ({"ls": [1, 2]}, Sample(ls=[1, 2])),
        ({"d": {"k": "v"}}, Sample(d={"k": "v"})),
        ({"lit": "b"}, Sample(lit="b")),
        ({"opt": None}, Sample()),
        ({"opt": 3}, Sample(opt=3)),
        ({}, Sample()),
    ],
)
def test_accepts_exact_json_types(raw: dict[str, Any], expected: Sample) -> None:
    assert structure_params(raw, Sample) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"i": "7"}, "expected integer @ $.params.i"),
        ({"i": 7.9}, "expected integer @ $.params.i"),
        ({"i": 7.0}, "expected integer @ $.params.i"),
        ({"i": True}, "expected integer @ $.params.i"),
        ({"i": None}, "expected integer @ $.params.i"),
        ({"f": True}, "expected number @ $.params.f"),
        ({"f": "1.5"}, "expected number @ $.params.f"),
        ({"b": 1}, "expected boolean @ $.params.b"),
        ({"b": "true"}, "expected boolean @ $.params.b"),
        ({"s": 5}, "expected string @ $.params.s"),
        ({"s": ["x"]}, "expected string @ $.params.s"),
        ({"t": "rm -rf"}, "expected array @ $.params.t"),
        ({"t": {"a": "b"}}, "expected array @ $.params.t"),
        ({"t": ["ok", 5]}, "expected string @ $.params.t[1]"),
        ({"ls": [1, True]}, "expected integer @ $.params.ls[1]"),
        ({"d": [["k", "v"]]}, "expected object @ $.params.d"),
        ({"d": "k=v"}, "expected object @ $.params.d"),
        ({"d": {"k": 1}}, "expected string @ $.params.d['k']"),
        ({"lit": "c"}, "expected one of 'a', 'b' @ $.params.lit"),
        ({"lit": ["a"]}, "expected one of 'a', 'b' @ $.params.lit"),
        ({"opt": True}, "expected integer @ $.params.opt"),
        ({"zzz": 1}, "unexpected fields (zzz) @ $.params"),
    ],
)
def test_refuses_coercions(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParams) as info:
        structure_params(raw, Sample)
    assert info.value.data == [message]
    assert info.value.message == f"Invalid params: {message}"


def test_reports_every_problem() -> None:
    with pytest.raises(InvalidParams) as info:
        structure_params({"i": "x", "s": 1, "extra": 0}, Sample)
    assert info.value.data == [
        "expected integer @ $.params.i",
        "expected string @ $.params.s",
        "unexpected fields (extra) @ $.params",
    ]


def test_missing_required_field() -> None:
    @attrs.frozen
    class Needs:
        run: str

    with pytest.raises(InvalidParams) as info:
        structure_params({}, Needs)
    assert info.value.data == ["required field missing @ $.params.run"]


def test_class_checks_keep_their_path() -> None:
    with pytest.raises(InvalidParams) as info:
        structure_params({"argv": ["ls", "a\0"]}, ExecuteParams)
    assert info.value.data == ["must not contain a NUL byte @ $.params.argv[1]"]


def test_unstructure_gives_plain_json() -> None:
    raw = unstructure_params(ExecuteParams(argv=("ls",), env={"A": "1"}, timeout=2.0))
    assert raw == {
        "command": None,
        "argv": ["ls"],
        "shell": False,
        "cwd": None,
        "env": {"A": "1"},
        "stdin": "null",
        "timeout": 2.0,
        "idle_timeout": None,
        "durable": False,
    }


@pytest.mark.parametrize(
    "params",
    [
        ExecuteParams(argv=("ls", "-l"), env={"A": "1"}, timeout=2.0, durable=True),
        ExecuteParams(command="echo hi"),
        ClaudeParams(prompt="hi", allowed_tools=("Bash",), env={"X": "y"}),
        ClaudeParams(session=True, include_partial_messages=True),
        ClaudeSendParams(run="r", content=[{"type": "text", "text": "hi"}], id="m"),
        ClaudePermissionParams(run="r", request="q", behavior="allow", updated_input={"a": [1]}),
    ],
)
def test_the_clients_unstructuring_is_cattrs_and_round_trips(params: Any) -> None:
    # The client sends params without loading the converter; the daemon reads them with it.
    raw = unstructure_params(params)
    assert raw == converter.unstructure(params)
    assert structure_params(orjson.loads(orjson.dumps(raw)), type(params)) == params
