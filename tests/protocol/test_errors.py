"""The error hierarchy: one class per code, each carrying the error object to send."""

import pytest

from cc_executor.protocol.errors import (
    AlreadyDecided,
    ControlTimeout,
    ErrorCode,
    InternalError,
    InvalidParams,
    InvalidRequest,
    InvalidState,
    JsonRpcError,
    LimitExceeded,
    LocalProtocolError,
    MethodNotFound,
    ParseError,
    PolicyRefused,
    RangeRemoved,
    RunNotFound,
    ShuttingDown,
    SpawnFailed,
)
from cc_executor.protocol.messages import ErrorObject

EXPECTED = {
    ParseError: -32700,
    InvalidRequest: -32600,
    MethodNotFound: -32601,
    InvalidParams: -32602,
    InternalError: -32603,
    PolicyRefused: -32001,
    RunNotFound: -32002,
    LimitExceeded: -32003,
    InvalidState: -32005,
    SpawnFailed: -32006,
    ControlTimeout: -32007,
    ShuttingDown: -32008,
    RangeRemoved: -32009,
    AlreadyDecided: -32014,
}


@pytest.mark.parametrize(("cls", "code"), EXPECTED.items())
def test_each_error_has_its_code(cls: type[JsonRpcError], code: int) -> None:
    exc = cls("went wrong", {"detail": [1, 2]})
    assert exc.code == code
    assert exc.error == ErrorObject(code=code, message="went wrong", data={"detail": [1, 2]})
    assert str(exc) == "went wrong"


def test_every_code_has_exactly_one_class() -> None:
    assert sorted(EXPECTED.values()) == sorted(int(code) for code in ErrorCode)
    assert set(JsonRpcError.__subclasses__()) == set(EXPECTED)


def test_error_object_code_is_a_plain_int() -> None:
    code = RunNotFound("no run r1").error.code
    assert type(code) is int
    assert code == -32002


def test_data_defaults_to_none() -> None:
    assert InvalidState("run r1 has finished").error.data is None


def test_local_protocol_error_is_not_a_json_rpc_error() -> None:
    # Our own bugs must never be mistaken for something to send to the peer.
    assert not issubclass(LocalProtocolError, JsonRpcError)
