"""The assistant's text as it arrives, from a Claude run's typed events, without I/O.

A CLI started with `--include-partial-messages` streams each message as raw API events
(`Partial`: `message_start`, then `content_block_delta` with `text_delta` pieces) before it
writes the whole message (`AssistantText`, one per text block); without that flag only the
whole blocks come.  `AssistantTextStream.feed` hands back each piece of text once: the deltas
of a message that streams, the whole block of one that did not.  Sub-agents' text (events with
a `parent_tool_use_id`) is not the session's answer and is left out.
"""

from collections import deque

from cc_executor.protocol.claude.events import AssistantText, ClaudeEvent, Partial

# Messages whose text came as deltas, remembered so that their whole blocks are not repeated
# (a message's blocks follow its deltas closely: a few are enough).
_REMEMBERED = 16


class AssistantTextStream:
    """Typed events in, the assistant's new text out (each piece once)."""

    def __init__(self) -> None:
        self._current: str | None = None  # the message being streamed, if any
        self._streamed: deque[str] = deque(maxlen=_REMEMBERED)

    def feed(self, event: ClaudeEvent) -> str:
        """The text this event adds to the assistant's answer ("" if none)."""
        match event:
            case Partial(event=dict() as raw, parent_tool_use_id=None):
                return self._partial(raw)
            case AssistantText(text=text, message_id=message_id, parent_tool_use_id=None):
                if message_id is not None and message_id in self._streamed:
                    return ""
                return text
        return ""

    def _partial(self, raw: dict[str, object]) -> str:
        kind = raw.get("type")
        if kind == "message_start":
            message = raw.get("message")
            message_id = message.get("id") if isinstance(message, dict) else None
            self._current = message_id if isinstance(message_id, str) else None
            return ""
        if kind != "content_block_delta":
            return ""
        delta = raw.get("delta")
        if not isinstance(delta, dict) or delta.get("type") != "text_delta":
            return ""
        text = delta.get("text")
        if not isinstance(text, str):
            return ""
        if self._current is not None and self._current not in self._streamed:
            self._streamed.append(self._current)
        return text
