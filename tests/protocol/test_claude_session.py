"""A live Claude session's protocol: its argv, its params, its stdin lines, its notices."""

from __future__ import annotations

import orjson
import pytest

from cc_executor.protocol import InvalidParams, ServerConnection, structure_params
from cc_executor.protocol.claude import (
    SESSION_NOTICES,
    ClaudeParams,
    ClaudePermissionDecided,
    ClaudePermissionParams,
    ClaudePermissionRequest,
    ClaudeResumeParams,
    ClaudeSendParams,
    ClaudeSetPermissionModeParams,
    ClaudeStateChanged,
    ClaudeTurnEnded,
    ClaudeTurnStarted,
    ControlCancel,
    ControlRequest,
    ControlResponse,
    Replayed,
    SessionNotice,
    UserText,
    build_argv,
    decode_session_notice,
    parse_line,
    session_params,
)
from cc_executor.protocol.claude.session import (
    control_request_line,
    control_success_line,
    permission_response,
    user_line,
)
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.methods import METHOD_OF, METHODS, RUN_EVENTS
from cc_executor.protocol.names import SESSION_NOTICE_METHODS
from cc_executor.protocol.notices import RunOutput
from cc_executor.protocol.server_codec import notice_message
from cc_executor.protocol.server_decoding import decode_notice

SESSION = "0b5e2f4a-6c1d-4e8f-9a3b-2c7d1e0f5a6b"


def test_session_argv_has_no_prompt_and_ids_as_flag_values() -> None:
    params = ClaudeParams(
        session=True,
        prompt="-rf hello",
        model="opus",
        resume=SESSION,
        permission_mode="plan",
        allowed_tools=("Read",),
        extra_args=("--add-dir", "/srv"),
    )
    argv = build_argv("claude", params)
    assert argv == (
        "claude",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-prompt-tool",
        "stdio",
        "--replay-user-messages",
        "--model=opus",
        f"--resume={SESSION}",
        "--permission-mode=plan",
        "--add-dir",
        "/srv",
        "--allowedTools",
        "Read",
    )
    assert "-p" not in argv
    assert "-rf hello" not in argv


def test_session_params() -> None:
    assert ClaudeParams(session=True).prompt is None  # a session may start idle
    with pytest.raises(InvalidParams, match=r"claude.send @ \$.params.input"):
        structure_params({"session": True, "input": "stream-json"}, ClaudeParams)
    with pytest.raises(InvalidParams, match=r"\$.params.prompt"):
        structure_params({"session": True, "prompt": "  "}, ClaudeParams)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"run": "r", "content": ""}, "content"),
        ({"run": "r", "content": []}, "content"),
        ({"run": "r", "content": ["text"]}, "content[0]"),
        ({"run": "r", "content": 7}, "content"),
        ({"run": "r", "content": "hi", "id": ""}, "id"),
        ({"run": "", "content": "hi"}, "run"),
    ],
)
def test_send_refuses_bad_content(raw: dict[str, JSON], where: str) -> None:
    with pytest.raises(
        InvalidParams, match=rf"\$\.params\.{where.replace('[', '.').replace(']', '.')}"
    ):
        structure_params(raw, ClaudeSendParams)


def test_send_takes_text_or_blocks() -> None:
    blocks: list[JSON] = [{"type": "text", "text": "hi"}]
    assert structure_params({"run": "r", "content": blocks}, ClaudeSendParams).content == blocks
    assert structure_params({"run": "r", "content": "hi", "id": "m1"}, ClaudeSendParams).id == "m1"


def test_permission_and_mode_params() -> None:
    with pytest.raises(InvalidParams, match="expected one of"):
        structure_params({"run": "r", "request": "q", "behavior": "maybe"}, ClaudePermissionParams)
    with pytest.raises(InvalidParams, match="only with behavior 'allow'"):
        structure_params(
            {"run": "r", "request": "q", "behavior": "deny", "updated_input": {}},
            ClaudePermissionParams,
        )
    # The CLI accepts any mode string (checked: "bogus" succeeds); the daemon does not.
    with pytest.raises(InvalidParams, match="expected one of"):
        structure_params({"run": "r", "mode": "bogus"}, ClaudeSetPermissionModeParams)


def test_resume_is_a_session_claude_request() -> None:
    resume = structure_params(
        {"session": SESSION, "model": "m", "durable": True}, ClaudeResumeParams
    )
    params = resume.claude_params()
    assert params.session
    assert params.resume == SESSION
    assert params.durable
    assert params.model == "m"
    with pytest.raises(InvalidParams, match=r"\$.params.session"):
        structure_params({"session": "not-a-uuid"}, ClaudeResumeParams)


def test_method_table_has_the_session_methods() -> None:
    for name in (
        "claude.send",
        "claude.interrupt",
        "claude.set_model",
        "claude.set_permission_mode",
        "claude.permission",
        "claude.close",
        "claude.resume",
    ):
        assert METHOD_OF[METHODS[name]] == name
    assert {"claude.turn_started", "claude.permission_request", "claude.state"} <= RUN_EVENTS


def test_stdin_lines() -> None:
    line = user_line("hello", "u-1")
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert orjson.loads(line) == {
        "type": "user",
        "message": {"role": "user", "content": "hello"},
        "parent_tool_use_id": None,
        "session_id": "default",
        "uuid": "u-1",
    }
    assert orjson.loads(control_request_line("req_1", {"subtype": "interrupt"}))["request"] == {
        "subtype": "interrupt"
    }
    allow = permission_response("allow", {"command": "ls"}, None, None)
    assert allow == {"behavior": "allow", "updatedInput": {"command": "ls"}}
    assert permission_response("deny", {}, None, "no")["message"] == "no"
    answer = orjson.loads(control_success_line("cli-1", allow))
    assert answer["response"]["request_id"] == "cli-1"


def test_control_lines_parse() -> None:
    request = parse_line(
        b'{"type":"control_request","request_id":"x","request":{"subtype":"can_use_tool",'
        b'"tool_name":"Bash","input":{"command":"ls"}}}'
    )
    assert request == [
        ControlRequest(
            "x",
            "can_use_tool",
            {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "ls"}},
        )
    ]
    ok = parse_line(
        b'{"type":"control_response","response":{"subtype":"success","request_id":"r"}}'
    )
    assert ok == [ControlResponse("r", "success", None, None)]
    bad = parse_line(
        b'{"type":"control_response","response":{"subtype":"error","request_id":"r","error":"no"}}'
    )
    assert bad == [ControlResponse("r", "error", None, "no")]
    assert parse_line(b'{"type":"control_cancel_request","request_id":"x"}') == [ControlCancel("x")]
    replay = parse_line(
        b'{"type":"user","message":{"role":"user","content":"hi"},"uuid":"u","isReplay":true}'
    )
    assert replay == [Replayed("u"), UserText("hi", None)]


@pytest.mark.parametrize(
    "notice",
    [
        ClaudeTurnStarted("r", 3, 1, ("m-1",)),
        ClaudeTurnEnded("r", 4, 1, {"subtype": "success", "cost_usd": 0.1}, interrupted=True),
        ClaudePermissionRequest("r", 5, "q", "Bash", {"command": "ls"}, "toolu_1", [], 12.5),
        ClaudePermissionDecided("r", 6, "q", "deny", "timeout", 13.0, "no answer within 1 s"),
        ClaudeStateChanged("r", 7, "idle"),
    ],
)
def test_session_notices_round_trip(notice: SessionNotice) -> None:
    message = notice_message(notice)
    assert isinstance(message.params, dict)
    assert message.params == session_params(notice)
    assert decode_notice(message.method, message.params) == notice
    assert decode_session_notice(message.method, message.params) == notice


def test_session_notice_names_are_their_classes_methods() -> None:
    # A client's decoder knows a session notice by its name (names.py) before loading its class.
    assert set(SESSION_NOTICES) == SESSION_NOTICE_METHODS
    assert all(cls.method == method for method, cls in SESSION_NOTICES.items())


def test_a_newer_daemons_extra_fields_are_left_out_and_missing_ones_refused() -> None:
    params = {"run": "r", "seq": 7, "state": "idle", "since": 12.5}
    assert decode_session_notice("claude.state", params) == ClaudeStateChanged("r", 7, "idle")
    with pytest.raises(TypeError):
        decode_session_notice("claude.state", {"run": "r", "seq": 7})


def test_session_notices_are_sequenced_with_the_output() -> None:
    conn = ServerConnection()
    conn.send(RunOutput("r", 1, "stdout", b"x\n"))
    conn.send(ClaudeStateChanged("r", 2, "running"))
    with pytest.raises(Exception, match="seq 4, expected 3"):
        conn.send(ClaudeStateChanged("r", 4, "idle"))
