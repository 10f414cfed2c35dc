"""What the server sends: typed notices and results encode to the original's fields and decode
back to equal values (the client decodes into the very classes the daemon sends)."""

from typing import Any

import attrs
import orjson
from hypothesis import given
from hypothesis import strategies as st

from cc_executor.protocol.codec import encode_message, encode_output
from cc_executor.protocol.notices import (
    Completion,
    Connected,
    Notice,
    RunCompleted,
    RunGap,
    RunJournalError,
    RunOutput,
    RunPaused,
    RunResumed,
    RunStarted,
    Shutdown,
)
from cc_executor.protocol.results import DaemonInfo, RunInfo
from cc_executor.protocol.server_codec import notice_message, result_object, run_info_object
from cc_executor.protocol.server_decoding import (
    decode_daemon_info,
    decode_notice,
    decode_run_info,
)

text = st.text(max_size=12)
ints = st.integers(min_value=0, max_value=2**31)
maybe_int = st.none() | ints
completions = st.builds(
    Completion,
    status=st.sampled_from(["completed", "failed", "canceled"]),
    outcome=st.sampled_from(["exited", "signalled", "cancelled", "timed_out", "lost", "failed"]),
    exit_code=st.none() | st.integers(-64, 255),
    signal=st.none() | st.sampled_from(["SIGTERM", "SIGKILL"]),
    reason=st.none() | text,
    rung=st.none() | st.sampled_from(["sigint", "sigterm", "sigkill"]),
    timeout=st.none() | st.sampled_from(["idle", "absolute"]),
    pid=maybe_int,
    pgid=maybe_int,
    execution_time=st.none() | st.floats(0, 1e6, allow_nan=False),
    stdout_bytes=ints,
    stderr_bytes=ints,
    claude=st.none() | st.dictionaries(text, text, max_size=3),
)
notices: st.SearchStrategy[Notice] = st.one_of(
    st.builds(RunOutput, text, ints, st.sampled_from(["stdout", "stderr"]), st.binary()),
    st.builds(RunPaused, text, ints, maybe_int, maybe_int),
    st.builds(RunResumed, text, ints, maybe_int, maybe_int),
    st.builds(RunCompleted, text, ints, completions),
    st.builds(RunGap, text, ints, text, st.dictionaries(st.sampled_from(["a", "b"]), ints)),
    st.builds(RunStarted, text, ints, ints, st.lists(text).map(tuple), st.booleans()),
    st.builds(
        Connected,
        text,
        text,
        text,
        st.lists(text).map(tuple),
        st.dictionaries(st.sampled_from(["max_runs_per_connection"]), ints),
    ),
    st.builds(Shutdown, text, st.floats(0, 100, allow_nan=False), text),
    st.builds(RunJournalError, text, ints, text, st.sampled_from(["block", "cancel"])),
)


def frame(notice: Notice) -> dict[str, Any]:
    wire = (
        encode_output(notice.run, notice.seq, notice.stream, notice.data)
        if isinstance(notice, RunOutput)
        else encode_message(notice_message(notice))
    )
    value: dict[str, Any] = orjson.loads(wire)
    return value


@given(notices)
def test_every_notice_decodes_to_itself(notice: Notice) -> None:
    message = frame(notice)
    assert decode_notice(message["method"], message["params"]) == notice


def test_the_completion_keeps_the_original_field_order() -> None:
    completion = Completion(
        status="canceled",
        outcome="cancelled",
        exit_code=-15,
        signal="SIGTERM",
        reason="cancelled by client",
        rung="sigterm",
        pid=7,
        pgid=7,
        execution_time=0.5,
    )
    params = frame(RunCompleted("r", 3, completion))["params"]
    assert list(params) == [
        "run",
        "seq",
        "status",
        "outcome",
        "reason",
        "rung",
        "exit_code",
        "signal",
        "pid",
        "pgid",
        "execution_time",
        "stdout_bytes",
        "stderr_bytes",
    ]


@given(
    st.builds(
        RunInfo,
        run=text,
        state=st.sampled_from(["running", "paused", "completed"]),
        pid=maybe_int,
        pgid=maybe_int,
        argv=st.lists(text).map(tuple),
        elapsed=st.floats(0, 1e6, allow_nan=False),
        stdout_bytes=ints,
        stderr_bytes=ints,
        last_seq=ints,
        started=st.none() | st.floats(0, 2e9, allow_nan=False),
        durable=st.booleans(),
        owner=st.none() | text,
        here=st.none() | st.booleans(),
        completion=st.none() | completions,
        journal=st.none() | st.dictionaries(st.sampled_from(["bytes"]), ints),
        claude=st.none() | st.dictionaries(st.sampled_from(["cost_usd"]), ints),
    )
)
def test_run_info_decodes_to_itself(info: RunInfo) -> None:
    decoded = decode_run_info(orjson.loads(orjson.dumps(run_info_object(info))))
    if info.completion is not None:
        # A completed run's status carries the outcome fields, not the per-event ones.
        fields = ("status", "outcome", "exit_code", "signal", "reason", "rung", "timeout")
        assert decoded.completion is not None
        for name in fields:
            assert getattr(decoded.completion, name) == getattr(info.completion, name)
        decoded = attrs.evolve(decoded, completion=info.completion)
    assert decoded == info


def test_daemon_info_hides_the_state_dir_unless_given() -> None:
    info = DaemonInfo("cc-executor", "1", "i", 1.0, 2, 0, 5, 0, 0, False)
    assert "state_dir" not in result_object(info)
    assert decode_daemon_info(result_object(info)) == info
