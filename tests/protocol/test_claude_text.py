"""The assistant's text from typed events: deltas when streamed, whole blocks otherwise, once."""

from __future__ import annotations

from cc_executor.protocol.claude import AssistantText, Partial, ToolUse
from cc_executor.protocol.claude.text import AssistantTextStream


def _start(message_id: str) -> Partial:
    return Partial({"type": "message_start", "message": {"id": message_id}}, None)


def _delta(text: str, parent: str | None = None) -> Partial:
    delta = {"type": "text_delta", "text": text}
    return Partial({"type": "content_block_delta", "index": 0, "delta": delta}, parent)


def test_whole_blocks_without_partial_messages() -> None:
    stream = AssistantTextStream()
    assert stream.feed(AssistantText("Hi", "msg_1", None)) == "Hi"
    assert stream.feed(ToolUse("t1", "Bash", {"command": "ls"}, "msg_1", None)) == ""
    assert stream.feed(AssistantText("Bye", "msg_2", None)) == "Bye"


def test_deltas_then_the_whole_block_is_not_repeated() -> None:
    stream = AssistantTextStream()
    assert stream.feed(_start("msg_1")) == ""
    pieces = [stream.feed(_delta(piece)) for piece in ("Hel", "lo")]
    assert pieces == ["Hel", "lo"]
    assert stream.feed(AssistantText("Hello", "msg_1", None)) == ""
    # The next message did not stream: its block is the text.
    assert stream.feed(AssistantText("Next", "msg_2", None)) == "Next"


def test_sub_agent_text_and_other_deltas_are_left_out() -> None:
    stream = AssistantTextStream()
    stream.feed(_start("msg_1"))
    assert stream.feed(_delta("inner", parent="toolu_1")) == ""
    assert stream.feed(AssistantText("inner", "msg_9", "toolu_1")) == ""
    json_delta = {"type": "content_block_delta", "delta": {"type": "input_json_delta"}}
    assert stream.feed(Partial(json_delta, None)) == ""
    assert stream.feed(Partial("not an object", None)) == ""
