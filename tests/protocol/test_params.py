"""Params classes are valid by construction: the checks types cannot express."""

import base64
from typing import Any

import pytest

from cc_executor.protocol.params import (
    SIGNALS,
    ControlParams,
    ExecuteParams,
    ParamError,
    SignalParams,
    StatusParams,
    StdinParams,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"command": "ls -l"},
        {"command": "echo hi | wc", "shell": True},
        {"argv": ("ls", "-l")},
        {"argv": ("x", "")},
        {"argv": ("env",), "env": {"A": "1", "B": ""}, "cwd": "/tmp"},
        {"argv": ("cat",), "stdin": "pipe", "timeout": 1, "idle_timeout": 0.5},
    ],
)
def test_valid_execute_params(kwargs: dict[str, Any]) -> None:
    ExecuteParams(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "where", "reason"),
    [
        ({}, "", "exactly one of command and argv"),
        ({"command": "ls", "argv": ("ls",)}, "", "exactly one of command and argv"),
        ({"command": ""}, ".command", "must not be empty"),
        ({"command": " \t\n"}, ".command", "must not be empty"),
        ({"command": "ls\0"}, ".command", "NUL"),
        ({"argv": ()}, ".argv", "must not be empty"),
        ({"argv": ("",)}, ".argv[0]", "must name a program"),
        ({"argv": ("ls", "a\0b")}, ".argv[1]", "NUL"),
        ({"argv": ("ls",), "shell": True}, ".shell", "only allowed with command"),
        ({"argv": ("ls",), "cwd": "/t\0"}, ".cwd", "NUL"),
        ({"argv": ("ls",), "env": {"A=B": "1"}}, ".env['A=B']", "without '='"),
        ({"argv": ("ls",), "env": {"": "1"}}, ".env['']", "non-empty"),
        ({"argv": ("ls",), "env": {"A\0": "1"}}, ".env['A\\x00']", "NUL"),
        ({"argv": ("ls",), "env": {"A": "\0"}}, ".env['A']", "NUL"),
        ({"argv": ("ls",), "timeout": 0}, ".timeout", "positive"),
        ({"argv": ("ls",), "timeout": -1.5}, ".timeout", "positive"),
        ({"argv": ("ls",), "timeout": float("inf")}, ".timeout", "positive"),
        ({"argv": ("ls",), "timeout": float("nan")}, ".timeout", "positive"),
        ({"argv": ("ls",), "idle_timeout": 0.0}, ".idle_timeout", "positive"),
    ],
)
def test_invalid_execute_params(kwargs: dict[str, Any], where: str, reason: str) -> None:
    with pytest.raises(ParamError) as info:
        ExecuteParams(**kwargs)
    assert info.value.where == where
    assert reason in info.value.reason
    assert str(info.value).endswith(f"@ $.params{where}")


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_signal_names_normalise_with_or_without_prefix(name: str) -> None:
    assert SignalParams(run="r", signal=name).signal == name
    assert SignalParams(run="r", signal=name.removeprefix("SIG")).signal == name


@pytest.mark.parametrize(
    "name", ["usr1", "SIGusr1", "SEGV", "SIGSEGV", "SIG", "", "SIGSIGINT", "9"]
)
def test_unknown_signals_are_refused(name: str) -> None:
    with pytest.raises(ParamError, match="unknown signal"):
        SignalParams(run="r", signal=name)


@pytest.mark.parametrize("name", ["STOP", "SIGSTOP", "CONT", "SIGCONT", "TSTP", "TTIN", "TTOU"])
def test_stopping_and_continuing_are_pause_and_resume_not_signals(name: str) -> None:
    # Sent behind the run's back they would leave a "paused" run running (or the reverse).
    with pytest.raises(ParamError, match="use control PAUSE or RESUME"):
        SignalParams(run="r", signal=name)


def test_stdin_payload_text_and_base64() -> None:
    assert StdinParams(run="r", data="héllo").payload() == "héllo".encode()
    raw = bytes(range(256))
    encoded = base64.b64encode(raw).decode()
    assert StdinParams(run="r", data=encoded, encoding="base64").payload() == raw
    assert StdinParams(run="r", eof=True).payload() == b""


@pytest.mark.parametrize("data", ["a", "@@@@", "aGk", "aGk=\n", "aGk=aGk="])
def test_stdin_invalid_base64_is_refused(data: str) -> None:
    with pytest.raises(ParamError, match="base64") as info:
        StdinParams(run="r", data=data, encoding="base64")
    assert info.value.where == ".data"


def test_stdin_lone_surrogate_is_refused() -> None:
    with pytest.raises(ParamError, match="Unicode"):
        StdinParams(run="r", data="\ud800")


def test_defaults() -> None:
    assert ControlParams(type="CANCEL").run is None
    assert StatusParams().run is None
    params = ExecuteParams(command="ls")
    assert (params.shell, params.env, params.stdin, params.timeout) == (False, {}, "null", None)
