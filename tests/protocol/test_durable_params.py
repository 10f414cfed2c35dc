"""Params of durable runs: execute's `durable`, attach and detach, strictly typed."""

from typing import Any

import pytest

from cc_executor.protocol.converter import structure_params
from cc_executor.protocol.errors import InvalidParams
from cc_executor.protocol.methods import METHOD_OF, METHODS, PROCESS_GAP, RUN_EVENTS
from cc_executor.protocol.params import AttachParams, DetachParams, ExecuteParams


def test_execute_is_not_durable_unless_asked() -> None:
    assert ExecuteParams(command="ls").durable is False
    assert structure_params({"command": "ls", "durable": True}, ExecuteParams).durable is True


@pytest.mark.parametrize("value", [1, "true", None, [True]])
def test_durable_must_be_a_boolean(value: Any) -> None:
    with pytest.raises(InvalidParams) as info:
        structure_params({"command": "ls", "durable": value}, ExecuteParams)
    assert "$.params.durable" in info.value.message


def test_attach_defaults_to_the_beginning() -> None:
    assert structure_params({"run": "r"}, AttachParams) == AttachParams(run="r", from_seq=0)
    assert structure_params({"run": "r", "from_seq": 7}, AttachParams).from_seq == 7


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"run": "r", "from_seq": -1}, "$.params.from_seq"),
        ({"run": "r", "from_seq": "7"}, "$.params.from_seq"),
        ({"run": "r", "from_seq": 7.0}, "$.params.from_seq"),
        ({"run": "r", "from_seq": True}, "$.params.from_seq"),
        ({"from_seq": 1}, "$.params.run"),
        ({"run": 5}, "$.params.run"),
        ({"run": "r", "extra": 1}, "extra"),
    ],
)
def test_attach_refuses_bad_params(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidParams) as info:
        structure_params(raw, AttachParams)
    assert where in info.value.message


def test_detach_names_its_run() -> None:
    assert structure_params({"run": "r"}, DetachParams) == DetachParams(run="r")
    with pytest.raises(InvalidParams):
        structure_params({}, DetachParams)


def test_attach_and_detach_are_methods() -> None:
    assert METHODS["attach"] is AttachParams
    assert METHODS["detach"] is DetachParams
    assert METHOD_OF[AttachParams] == "attach"


def test_gap_is_not_a_sequenced_run_event() -> None:
    # process.gap announces a jump in seq; it carries the first missing seq but is not one.
    assert PROCESS_GAP not in RUN_EVENTS
