"""The original CC-Executor's profile, applied by ServerConnection; the current one unchanged."""

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_executor.protocol.codec import encode_output, encode_output_lines
from cc_executor.protocol.connection import ServerConnection
from cc_executor.protocol.errors import (
    InvalidRequest,
    InvalidState,
    LimitExceeded,
    LocalProtocolError,
    PolicyRefused,
    RunNotFound,
    SpawnFailed,
)
from cc_executor.protocol.events import Invalid, RequestReceived, Single
from cc_executor.protocol.notices import (
    Completion,
    Connected,
    RunCompleted,
    RunOutput,
    RunPaused,
    RunStarted,
)
from cc_executor.protocol.params import ControlParams, ExecuteParams
from cc_executor.protocol.profile import CURRENT, ORIGINAL, profile_for
from cc_executor.protocol.results import ControlDone

CANCELLED = Completion(status="canceled", outcome="cancelled", exit_code=-15, pid=9, pgid=9)
EXITED = Completion(status="completed", outcome="exited", exit_code=0, pid=9, pgid=9)


def wire(text: str | bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(text)
    return value


def request(method: str, params: dict[str, Any], id_: int = 1) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}).decode()


def only(conn: ServerConnection, text: str) -> Any:
    received = conn.receive(text)
    assert isinstance(received, Single)
    return received.event


# -- which profile ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "profile"),
    [
        ("/", CURRENT),
        ("/ws/mcp", ORIGINAL),
        ("/ws/mcp?token=t", ORIGINAL),
        ("/ws/mcp?protocol=current", CURRENT),
        ("/ws/mcp?token=t&protocol=current", CURRENT),
        ("/?protocol=original", ORIGINAL),
        ("/?protocol=current", CURRENT),
    ],
)
def test_the_profile_follows_the_path_unless_the_query_names_one(target: str, profile: Any) -> None:
    assert profile_for(target) is profile


@pytest.mark.parametrize(
    "query", ["protocol=v2", "protocol=", "protocol=current&protocol=original"]
)
def test_a_profile_that_is_not_known_is_refused(query: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        profile_for(f"/ws/mcp?{query}")
    assert refused.value.data is not None


# -- output ----------------------------------------------------------------------------------


def test_original_output_is_one_frame_per_line_with_truncated_and_the_events_seq() -> None:
    conn = ServerConnection(ORIGINAL)
    data = b'{"type":"assistant"}\n{"type":"result"}\npartial'
    frames = [wire(text) for text in conn.send_frames(RunOutput("r", 1, "stdout", data))]
    line = {"run": "r", "seq": 1, "type": "stdout", "truncated": False}
    assert [frame["params"] for frame in frames] == [
        line | {"data": '{"type":"assistant"}\n'},
        line | {"data": '{"type":"result"}\n'},
        line | {"data": "partial"},
    ]
    assert list(frames[0]["params"]) == ["run", "seq", "type", "data", "truncated"]
    assert all(frame["method"] == "process.output" for frame in frames)
    # The next event is the next seq, however many frames the last one took.
    (next_frame,) = conn.send_frames(RunOutput("r", 2, "stdout", b" line\n"))
    assert wire(next_frame)["params"]["seq"] == 2


def test_only_a_newline_ends_a_line() -> None:
    frames = encode_output_lines("r", 1, "stderr", b"a\rb\x0bc\x1cd\n\n")
    assert [wire(text)["params"]["data"] for text in frames] == ["a\rb\x0bc\x1cd\n", "\n"]


def test_a_line_that_is_not_utf8_goes_as_base64_and_the_others_as_text() -> None:
    frames = [wire(t)["params"] for t in encode_output_lines("r", 3, "stdout", b"ok\n\xff\nend\n")]
    assert [(p["data"], p.get("encoding")) for p in frames] == [
        ("ok\n", None),
        ("/wo=", "base64"),
        ("end\n", None),
    ]
    assert all(p["truncated"] is False for p in frames)


def test_a_line_whose_json_would_not_fit_the_frame_goes_as_base64() -> None:
    nuls = b"\0" * 1000 + b"\n"
    (text, small) = encode_output_lines("r", 1, "stdout", nuls + b"x\n", max_frame=2000)
    assert wire(text)["params"]["encoding"] == "base64"
    assert "encoding" not in wire(small)["params"]
    with pytest.raises(LocalProtocolError):
        encode_output_lines("r", 1, "stdout", nuls, max_frame=500)


@given(st.lists(st.binary(max_size=40) | st.text(max_size=40).map(str.encode), max_size=8))
def test_original_frames_hold_one_line_each_and_reproduce_the_bytes(parts: list[bytes]) -> None:
    import base64

    data = b"\n".join(parts)
    frames = [wire(t)["params"] for t in encode_output_lines("r", 7, "stdout", data)]
    pieces = [
        base64.b64decode(p["data"]) if p.get("encoding") == "base64" else p["data"].encode()
        for p in frames
    ]
    assert b"".join(pieces) == data
    assert all(piece.count(b"\n") == 1 and piece.endswith(b"\n") for piece in pieces[:-1])
    assert all(piece for piece in pieces)
    if pieces:
        assert pieces[-1].count(b"\n") <= 1
    assert {p["seq"] for p in frames} <= {7}


def test_current_output_is_one_batched_frame_exactly_as_before() -> None:
    conn = ServerConnection()
    data = b"one\ntwo\nthree\n"
    assert conn.send_frames(RunOutput("r", 1, "stdout", data)) == [
        '{"jsonrpc":"2.0","method":"process.output","params":'
        '{"run":"r","seq":1,"type":"stdout","data":"one\\ntwo\\nthree\\n"}}'
    ]
    assert conn.send(RunOutput("r", 2, "stdout", b"\xff")) == encode_output(
        "r", 2, "stdout", b"\xff"
    )


def test_send_refuses_a_notice_the_profile_makes_several_frames_of() -> None:
    conn = ServerConnection(ORIGINAL)
    assert wire(conn.send(RunOutput("r", 1, "stdout", b"one line\n")))["params"]["seq"] == 1
    with pytest.raises(LocalProtocolError, match="send_frames"):
        conn.send(RunOutput("r", 2, "stdout", b"two\nlines\n"))


# -- cancel ----------------------------------------------------------------------------------


def test_original_sends_process_canceled_before_a_cancelled_runs_completion() -> None:
    conn = ServerConnection(ORIGINAL)
    canceled, completed = (wire(t) for t in conn.send_frames(RunCompleted("r", 1, CANCELLED)))
    assert canceled == {
        "jsonrpc": "2.0",
        "method": "process.canceled",
        "params": {
            "run": "r",
            "status": "canceled",
            "pid": 9,
            "pgid": 9,
            "exit_code": None,
            "error": None,
        },
    }
    assert completed["method"] == "process.completed"
    assert completed["params"]["status"] == "canceled"
    assert (completed["params"]["exit_code"], completed["params"]["error"]) == (-15, None)
    with pytest.raises(LocalProtocolError):  # nothing follows the completion
        conn.send_frames(RunOutput("r", 2, "stdout", b"late\n"))


def test_original_status_notifications_have_every_field_of_its_status_update() -> None:
    """exit_code and error, null where there is none, after our own fields (order kept)."""
    frames = {}
    for profile in (ORIGINAL, CURRENT):
        conn = ServerConnection(profile)
        notices = (RunStarted("r", 7, 7, ("sleep", "1")), RunPaused("r", 1, 7, 7))
        frames[profile.name] = [wire(conn.send(notice))["params"] for notice in notices]
    started, paused = frames["original"]
    assert list(started) == ["run", "status", "pid", "pgid", "argv", "exit_code", "error"]
    assert (started["exit_code"], started["error"]) == (None, None)
    assert list(paused) == ["run", "seq", "status", "pid", "pgid", "exit_code", "error"]
    assert all("error" not in params for params in frames["current"])


@pytest.mark.parametrize(
    ("profile", "completion", "methods"),
    [
        (ORIGINAL, EXITED, ["process.completed"]),
        (CURRENT, CANCELLED, ["process.completed"]),
        (CURRENT, EXITED, ["process.completed"]),
    ],
)
def test_no_process_canceled_otherwise(profile: Any, completion: Completion, methods: Any) -> None:
    frames = ServerConnection(profile).send_frames(RunCompleted("r", 1, completion))
    assert [wire(text)["method"] for text in frames] == methods


@pytest.mark.parametrize(("profile", "methods"), [(ORIGINAL, ["process.canceled"]), (CURRENT, [])])
def test_a_cancel_answered_canceled_is_announced_whatever_the_completion_says(
    profile: Any, methods: list[str]
) -> None:
    """A CANCEL that joined the ladder of a run ending by itself is answered "canceled"; its
    run's completion says it exited, and the original's clients still get process.canceled."""
    conn = ServerConnection(profile)
    only(conn, request("control", {"type": "CANCEL", "run": "r"}, 4))
    conn.respond(4, ControlDone("canceled", "r", "sigkill"))
    frames = [wire(text)["method"] for text in conn.send_frames(RunCompleted("r", 1, EXITED))]
    assert frames == [*methods, "process.completed"]
    # Once: the next run's exit is not announced as a cancel.
    assert len(conn.send_frames(RunCompleted("s", 1, EXITED))) == 1


# -- params ----------------------------------------------------------------------------------


def test_original_ignores_unknown_execute_and_control_params_and_names_them() -> None:
    conn = ServerConnection(ORIGINAL)
    params = {"id": "health_check", "command": "echo 'WebSocket test'", "path": "/tmp"}
    assert only(conn, request("execute", params)) == RequestReceived(
        1, "execute", ExecuteParams(command="echo 'WebSocket test'"), ("id", "path")
    )
    assert only(conn, request("control", {"type": "CANCEL", "id": 4}, 2)) == RequestReceived(
        2, "control", ControlParams("CANCEL"), ("id",)
    )
    known = only(conn, request("execute", {"argv": ["ls"], "cwd": "/"}, 3))
    assert known == RequestReceived(3, "execute", ExecuteParams(argv=("ls",), cwd="/"))


def test_original_still_refuses_wrong_types_and_other_methods_extras() -> None:
    conn = ServerConnection(ORIGINAL)
    wrong = only(conn, request("execute", {"command": ["ls"], "path": "/tmp"}))
    assert isinstance(wrong, Invalid)
    assert wrong.reply.error.code == -32603  # the original's catch-all for what pydantic refused
    extra = only(conn, request("status", {"verbose": True}, 2))
    assert isinstance(extra, Invalid)


def test_current_refuses_unknown_params() -> None:
    event = only(ServerConnection(), request("execute", {"command": "ls", "path": "/tmp"}))
    assert isinstance(event, Invalid)
    assert event.reply.error.code == -32602
    assert event.reply.error.data == ["unexpected fields (path) @ $.params"]


# -- error codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "current", "original"),
    [
        ('{"jsonrpc":', -32700, -32603),
        ("42", -32600, -32603),
        (request("nosuch", {}), -32601, -32601),
        (request("execute", {}), -32602, -32603),
    ],
)
def test_refusals_of_received_frames(text: str, current: int, original: int) -> None:
    for profile, code in ((CURRENT, current), (ORIGINAL, original)):
        event = only(ServerConnection(profile), text)
        assert isinstance(event, Invalid)
        assert event.reply.error.code == code


def test_a_duplicate_id_is_refused_in_the_profiles_code() -> None:
    conn = ServerConnection(ORIGINAL)
    only(conn, request("list", {}))
    duplicate = only(conn, request("list", {}))
    assert isinstance(duplicate, Invalid)
    assert (duplicate.reply.id, duplicate.reply.error.code) == (None, -32603)


@pytest.mark.parametrize(
    ("exc", "current", "original"),
    [
        (PolicyRefused("command 'rm' is not allowed"), -32001, -32002),
        (RunNotFound("no run"), -32002, -32003),
        (LimitExceeded("max_runs_per_connection"), -32003, -32001),
        (InvalidState("completed"), -32005, -32003),
        (SpawnFailed("no such file"), -32006, -32603),
    ],
)
def test_replied_errors_carry_the_profiles_code(exc: Any, current: int, original: int) -> None:
    for profile, code in ((CURRENT, current), (ORIGINAL, original)):
        conn = ServerConnection(profile)
        only(conn, request("list", {}, 1))
        only(conn, request("list", {}, 2))
        reply = wire(conn.respond_error(1, exc))
        assert reply["error"] == {"code": code, "message": exc.message}
        assert conn.make_error(2, exc).error.code == code


def test_a_binary_frame_is_minus_32700_on_every_profile() -> None:
    for profile in (CURRENT, ORIGINAL):
        reply = wire(ServerConnection(profile).refuse_binary())
        assert reply["id"] is None
        assert reply["error"]["code"] == -32700


# -- connected -------------------------------------------------------------------------------


def test_connected_names_the_original_profile() -> None:
    hello = Connected("s", "0.1.0", "cc-executor", ("execute",), {})
    assert "protocol" not in wire(ServerConnection().send(hello))["params"]
    assert wire(ServerConnection(ORIGINAL).send(hello))["params"]["protocol"] == "original"
