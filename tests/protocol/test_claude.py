"""The `claude` request, its argv, and the stream-json parser (real CLI transcripts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_executor.protocol import JSON, InvalidParams, structure_params
from cc_executor.protocol.claude import (
    AssistantText,
    ClaudeParams,
    Init,
    Other,
    Partial,
    Result,
    Status,
    StreamJsonParser,
    ToolResult,
    ToolUse,
    Unparsed,
    build_argv,
    event_params,
    parse_line,
    result_summary,
)

TRANSCRIPTS = Path(__file__).resolve().parents[3] / "shared" / "data" / "claude-stream-json"
SESSION = "5ccb6340-7972-4bfc-a333-266bc726004b"


def transcript(name: str) -> bytes:
    path = TRANSCRIPTS / name
    if not path.exists():
        pytest.skip(f"transcript {path} is not on this machine")
    return path.read_bytes()


def parse_all(data: bytes, max_line: int = 1 << 20) -> list[object]:
    parser = StreamJsonParser(max_line)
    return [*parser.feed(data), *parser.close()]


# -- the request ---------------------------------------------------------------------------


def test_argv_has_the_fixed_flags_and_the_prompt_after_double_dash() -> None:
    params = ClaudeParams(prompt="--help me", allowed_tools=("Bash", "Edit"), model="sonnet")
    argv = build_argv("/opt/claude", params)
    assert argv[:5] == ("/opt/claude", "-p", "--output-format", "stream-json", "--verbose")
    assert argv[-2:] == ("--", "--help me")
    assert argv[argv.index("--allowedTools") + 1 : argv.index("--allowedTools") + 3] == (
        "Bash",
        "Edit",
    )
    assert argv[argv.index("--model") : argv.index("--model") + 2] == ("--model", "sonnet")


def test_argv_for_resume_partial_and_stream_json_input() -> None:
    params = ClaudeParams(
        input="stream-json", resume=SESSION, include_partial_messages=True, max_turns=4
    )
    argv = build_argv("claude", params)
    assert "--" not in argv
    assert argv[argv.index("--input-format") + 1] == "stream-json"
    assert argv[argv.index("--resume") + 1] == SESSION
    assert argv[argv.index("--max-turns") + 1] == "4"
    assert "--include-partial-messages" in argv
    assert params.claude_session == SESSION


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({}, "$.params.prompt"),
        ({"prompt": " "}, "$.params.prompt"),
        ({"input": "stream-json", "prompt": "x"}, "$.params.prompt"),
        ({"prompt": "x", "resume": "not-a-uuid"}, "$.params.resume"),
        ({"prompt": "x", "max_turns": 0}, "$.params.max_turns"),
        ({"prompt": "x", "max_turns": "3"}, "$.params.max_turns"),
        ({"prompt": "x", "allowed_tools": "Bash"}, "$.params.allowed_tools"),
        ({"prompt": "x", "allowed_tools": ["--evil"]}, "$.params.allowed_tools[0]"),
        ({"prompt": "x", "extra_args": ["--"]}, "$.params.extra_args[0]"),
        ({"prompt": "x", "idle_action": "explode"}, "$.params.idle_action"),
        ({"prompt": "x", "fork_session": True}, "$.params.fork_session"),
        ({"prompt": "x", "resume": SESSION, "continue_session": True}, "$.params"),
        ({"prompt": "x", "bogus": 1}, "$.params"),
    ],
)
def test_bad_requests_name_the_field(raw: dict[str, JSON], where: str) -> None:
    with pytest.raises(InvalidParams) as info:
        structure_params(raw, ClaudeParams)
    problems = info.value.data
    assert isinstance(problems, list)
    assert any(where in str(problem) for problem in problems), problems


# -- the parser ----------------------------------------------------------------------------


def test_plain_transcript() -> None:
    events = parse_all(transcript("sample.jsonl"))
    init, text, result = events
    assert isinstance(init, Init)
    assert init.session_id == SESSION
    assert "Bash" in init.tools
    assert isinstance(text, AssistantText)
    assert text.text == "Hi! (fake API)"
    assert isinstance(result, Result)
    assert result.subtype == "success"
    assert not result.failed
    assert result.total_cost_usd == 0.000175
    assert result.num_turns == 1
    assert result.usage["output_tokens"] == 5


def test_tool_transcript() -> None:
    kinds = [type(e) for e in parse_all(transcript("sample-tool.jsonl"))]
    assert kinds == [Init, AssistantText, ToolUse, ToolResult, AssistantText, Result]
    events = parse_all(transcript("sample-tool.jsonl"))
    use, result = events[2], events[3]
    assert isinstance(use, ToolUse)
    assert isinstance(result, ToolResult)
    assert use.name == "Bash"
    assert use.input["command"] == "echo hello"
    assert result.tool_use_id == use.id
    assert result.content == "hello"
    assert not result.is_error


def test_partial_transcript_has_stream_events_and_status() -> None:
    events = parse_all(transcript("sample-tool-partial.jsonl"))
    assert any(isinstance(e, Partial) for e in events)
    assert any(isinstance(e, Status) and e.status == "requesting" for e in events)
    assert isinstance(events[-1], Result)


@given(st.data())
def test_any_split_of_the_bytes_gives_the_same_events(data: st.DataObject) -> None:
    raw = transcript("sample-tool-partial.jsonl")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=20)))
    parser = StreamJsonParser(1 << 20)
    events = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        events += parser.feed(raw[start:end])
    events += parser.close()
    assert events == parse_all(raw)


def test_unknown_types_pass_through_and_junk_never_raises() -> None:
    (other,) = parse_line(b'{"type":"brand_new","subtype":"x","n":1}')
    assert isinstance(other, Other)
    assert other.event_type == "brand_new"
    assert other.raw["n"] == 1
    assert event_params(other)["type"] == "other"
    (junk,) = parse_line(b"not json at all")
    assert isinstance(junk, Unparsed)
    assert junk.reason == "not JSON"
    (array,) = parse_line(b"[1,2]")
    assert isinstance(array, Unparsed)
    (odd,) = parse_line(b'{"type":"assistant","message":{"content":[{"type":"image"}]}}')
    assert isinstance(odd, Other)
    assert parse_line(b'{"type":"assistant","message":"?"}')[0].kind == "other"


def test_a_line_longer_than_the_limit_is_reported_not_kept() -> None:
    parser = StreamJsonParser(max_line=100)
    events = parser.feed(b'{"type":"x","pad":"' + b"a" * 150)
    events += parser.feed(b'a"}\n{"type":"system","subtype":"status","status":"s"}\n')
    assert isinstance(events[0], Unparsed)
    assert events[0].reason == "line too long"
    assert events[0].size > 150
    assert isinstance(events[1], Status)


def test_a_last_line_without_newline_is_parsed_at_close() -> None:
    parser = StreamJsonParser(1 << 20)
    assert parser.feed(b'{"type":"result","subtype":"success","is_error":false}') == []
    (result,) = parser.close()
    assert isinstance(result, Result)


def test_an_error_result_with_subtype_success_is_a_failure() -> None:
    (result,) = parse_line(
        b'{"type":"result","subtype":"success","is_error":true,"api_error_status":429}'
    )
    assert isinstance(result, Result)
    assert result.failed
    summary = result_summary(result, None)
    assert summary["is_error"] is True
    assert summary["api_error_status"] == 429
    assert result_summary(None, SESSION) == {"has_result": False, "session_id": SESSION}
