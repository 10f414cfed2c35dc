"""The MCP view of a live Claude session: its state, pending requests, and each turn's text.

Theory of operation: MCP clients want answers, not streams: "send this and give me the turn's
answer", "what is pending?".  So a session run started by an MCP tool keeps, beside its
RunLog (runlog.py, which feeds it every numbered event with the typed events of its stdout), a
``SessionView``: built only from the session's own notices (turn started / ended, a queued
message taken, permission requested / decided, state) and the assistant's text, it knows which
turn took which message, what each of the last ``session_turns_kept`` turns said, the
permission requests decided in it (who decided what, when) and how it ended, and what is
pending.  It decides nothing: the session machinery (executor/claude/) does,
and its notices are the record.  Waiters wake on every change (``wait_changed``).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio

from cc_executor.executor.config.mcp import McpConfig
from cc_executor.executor.runs.wire import event_notice
from cc_executor.protocol import JSON
from cc_executor.protocol.claude import (
    ClaudeEvent,
    ClaudeMessageTaken,
    ClaudePermissionDeadline,
    ClaudePermissionDecided,
    ClaudePermissionRequest,
    ClaudeStateChanged,
    ClaudeTurnEnded,
    ClaudeTurnStarted,
    session_params,
)
from cc_executor.protocol.claude.text import AssistantTextStream
from cc_executor.supervision import Note, SequencedEvent


@attrs.define
class TurnView:
    """One turn: the messages it took, what the assistant said, how it ended."""

    turn: int
    messages: list[str] = attrs.field(factory=list)
    pieces: list[str] = attrs.field(factory=list)
    size: int = 0
    truncated: bool = False  # its text lost its beginning (longer than turn_text_bytes)
    ended: ClaudeTurnEnded | None = None
    permissions: list[JSON] = attrs.field(factory=list)  # the requests decided in it

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, piece: str, limit: int) -> None:
        self.pieces.append(piece)
        self.size += len(piece)
        while self.size > limit and len(self.pieces) > 1:
            self.size -= len(self.pieces.pop(0))
            self.truncated = True

    def describe(self) -> dict[str, JSON]:
        described: dict[str, JSON] = {
            "turn": self.turn,
            "messages": list(self.messages),
            "text": self.text,
            "ended": self.ended is not None,
            "permissions": list(self.permissions),
        }
        if self.truncated:
            described["truncated"] = True
        if self.ended is not None:
            described["interrupted"] = self.ended.interrupted
            described["result"] = dict(self.ended.result)
        return described


def _decision(asked: ClaudePermissionRequest | None, decided: ClaudePermissionDecided) -> JSON:
    """A decided request as a turn's view lists it: what was asked, who decided what, when."""
    described: dict[str, JSON] = {"request": decided.request}
    if asked is not None:
        described.update(tool=asked.tool, input=asked.input)
    described.update(behavior=decided.behavior, by=decided.by, at=decided.at)
    if decided.message is not None:
        described["message"] = decided.message
    return described


class SessionView:
    """What one session run has said so far, as MCP tools read it."""

    def __init__(self, run_id: str, config: McpConfig) -> None:
        self.run_id = run_id
        self._config = config
        self.state = "idle"
        self.turns: dict[int, TurnView] = {}  # the last `session_turns_kept`, oldest first
        self.current: TurnView | None = None  # the running turn
        self.pending: dict[str, ClaudePermissionRequest] = {}
        self._taken: dict[str, int] = {}  # message id -> the turn that took it
        self._text = AssistantTextStream()
        self.text_changes = 0  # counts additions to a turn's text (for progress)
        self._changed = trio.Event()

    def record(self, event: SequencedEvent, claude: Sequence[ClaudeEvent]) -> None:
        """One numbered event of the run, with the typed events its stdout completes."""
        if isinstance(event, Note):
            self._notice(event)
        for typed in claude:
            piece = self._text.feed(typed)
            if piece and self.current is not None:
                self.current.add(piece, self._config.turn_text_bytes)
                self.text_changes += 1
        self._changed.set()
        self._changed = trio.Event()

    def _notice(self, note: Note) -> None:
        match event_notice(self.run_id, None, None, note, None):
            case ClaudeTurnStarted(turn=turn, messages=messages):
                view = self._turn(turn)
                view.messages.extend(messages)
                for message in messages:
                    self._taken[message] = turn
                self.current = view
            case ClaudeMessageTaken(message=message, turn=turn):
                self._turn(turn).messages.append(message)
                self._taken[message] = turn
            case ClaudeTurnEnded(turn=turn) as ended:
                self._turn(turn).ended = ended
                if self.current is not None and self.current.turn == turn:
                    self.current = None
            case ClaudePermissionRequest(request=request) as asked:
                self.pending[request] = asked
            case ClaudePermissionDeadline(request=request, expires_at=expires_at):
                if (posted := self.pending.get(request)) is not None:  # moved by a pause
                    self.pending[request] = attrs.evolve(posted, expires_at=expires_at)
            case ClaudePermissionDecided(request=request) as decided:
                question = self.pending.pop(request, None)
                if self.current is not None:
                    self.current.permissions.append(_decision(question, decided))
            case ClaudeStateChanged(state=state):
                self.state = state

    def _turn(self, turn: int) -> TurnView:
        view = self.turns.get(turn)
        if view is None:
            view = self.turns[turn] = TurnView(turn)
            while len(self.turns) > self._config.session_turns_kept:
                oldest = next(iter(self.turns))
                del self.turns[oldest]
                self._taken = {m: t for m, t in self._taken.items() if t != oldest}
        return view

    def turn_of(self, message: str) -> TurnView | None:
        """The turn that took `message`, once one has."""
        turn = self._taken.get(message)
        return None if turn is None else self.turns.get(turn)

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def describe(self, from_turn: int = 0) -> dict[str, JSON]:
        """State, pending requests (as their notifications' params), turns after `from_turn`."""
        pending: list[JSON] = [session_params(request) for request in self.pending.values()]
        turns: list[JSON] = [
            view.describe() for turn, view in self.turns.items() if turn > from_turn
        ]
        return {
            "run": self.run_id,
            "state": self.state,
            "turn": None if not self.turns else max(self.turns),
            "pending": pending,
            "turns": turns,
        }
