"""The method table is complete and consistent."""

import typing

import attrs

from cc_executor.protocol.methods import (
    METHOD_OF,
    METHODS,
    PROCESS_COMPLETED,
    PROCESS_OUTPUT,
    RUN_EVENTS,
    Params,
)


def test_client_methods() -> None:
    assert set(METHODS) == {
        "execute",
        "control",
        "signal",
        "stdin",
        "status",
        "list",
        "attach",
        "detach",
        "claude",
        "claude.send",
        "claude.interrupt",
        "claude.set_model",
        "claude.set_permission_mode",
        "claude.permission",
        "claude.close",
        "claude.resume",
    }


def test_every_params_class_is_in_the_table_once() -> None:
    assert set(METHODS.values()) == set(typing.get_args(Params))
    assert {name: cls for cls, name in METHOD_OF.items()} == dict(METHODS)


def test_params_classes_are_frozen_attrs() -> None:
    for cls in METHODS.values():
        assert attrs.has(cls)
        assert all(not hasattr(cls, name) for name in ("to_json", "from_json", "dumps"))


def test_run_events_include_output_and_completion() -> None:
    assert {PROCESS_OUTPUT, PROCESS_COMPLETED} <= RUN_EVENTS
