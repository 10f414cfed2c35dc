"""A tool call (or an MCP task) that waits for the turn of a Claude session that takes one
message, and what it answers: the turn's text, result and cost.

Theory of operation: ``claude.send`` answers once the message is in the CLI's stdin, with the
turn it starts or the running turn it queues behind.  Which turn *takes* it is known only from
the session's notices (turn_started names its messages, claude.message a queued one taken by the
running turn), which the run's SessionView records; so a ``TurnWait`` waits on the view until
the turn that took its message has ended, or the run is over.  ``follow`` is that wait as a
task (a task's follower lives in the daemon's nursery, so the task outlives its client).
"""

from __future__ import annotations

import contextlib

import attrs
import orjson
import trio

from cc_executor.executor.claude.session import ClaudeSession
from cc_executor.executor.mcp.runlog import halve_longest
from cc_executor.executor.mcp.runs import McpRun
from cc_executor.executor.mcp.sessionview import SessionView, TurnView
from cc_executor.protocol import JSON, JsonRpcError
from cc_executor.protocol.mcp import tool_result
from cc_executor.protocol.results import ClaudeSent


@attrs.define(eq=False)
class TurnWait:
    """Waiting for the turn that takes `sent.message`."""

    run: McpRun
    view: SessionView
    sent: ClaudeSent
    done: trio.Event = attrs.field(factory=trio.Event)
    interrupted_by_cancel: bool = False  # the task was cancelled (tasks/cancel interrupts)

    @property
    def turn(self) -> TurnView | None:
        return self.view.turn_of(self.sent.message)

    @property
    def ended(self) -> bool:
        turn = self.turn
        return (turn is not None and turn.ended is not None) or self.run.log.done.is_set()

    async def follow(self) -> None:
        """Until the turn has ended (or the run is over)."""
        try:
            while not self.ended:
                await self.view.wait_changed()
        finally:
            self.done.set()

    @property
    def failed(self) -> bool:
        turn = self.turn
        if turn is None or turn.ended is None:
            return True  # the run ended first
        return bool(turn.ended.result.get("is_error"))

    def summary(self) -> dict[str, JSON]:
        """The structured result: the message, its turn, the turn's text and result."""
        turn = self.turn
        summary: dict[str, JSON] = {
            "run": self.run.run_id,
            "message": self.sent.message,
            "turn": self.sent.turn if turn is None else turn.turn,
            "disposition": self.sent.disposition,
            # The session's own state while it lives; once the run is over, as status says it.
            "state": "ended" if self.run.log.done.is_set() else self.view.state,
            "pending": [p.request for p in self.view.pending.values()],
        }
        if turn is not None:
            summary.update(turn.describe())
        if self.run.log.done.is_set() and (turn is None or turn.ended is None):
            summary["ended"] = False
            summary["run_ended"] = True
        return summary

    def result(self, version: str | None, room: int) -> dict[str, JSON]:
        """The CallToolResult (`text`, `summary`) in at most `room` bytes of JSON: a turn's
        text and its result's text are halved, keeping their end (`truncated: true`), until
        it fits one frame."""
        text: dict[str, JSON] = {"text": self.text()}
        summary = self.summary()
        while True:
            result = tool_result(str(text["text"]), summary, is_error=self.failed, version=version)
            if len(orjson.dumps(result)) <= room:
                return result
            places: list[tuple[dict[str, JSON], str]] = [(text, "text"), (summary, "text")]
            turn_result = summary.get("result")
            if isinstance(turn_result, dict):
                places.append((turn_result, "result"))
            if not halve_longest(places):
                return result  # nothing left to cut
            summary["truncated"] = True

    def text(self) -> str:
        """The result as text for the model: the turn's answer, then one line of facts."""
        turn = self.turn
        if turn is None or turn.ended is None:
            if self.run.log.done.is_set():
                if turn is not None:  # it ran, but the run ended before its result
                    return (
                        f"session {self.run.run_id} ended during turn {turn.turn} (message "
                        f"{self.sent.message}), before the turn's result"
                    )
                return f"session {self.run.run_id} ended before the turn of {self.sent.message}"
            return f"message {self.sent.message} is waiting for turn {self.sent.turn}"
        result = turn.ended.result
        how = "interrupted" if turn.ended.interrupted else str(result.get("subtype"))
        facts = {"turn": turn.turn, "how": how, "cost_usd": result.get("cost_usd")}
        return f"{turn.text}\n--- {orjson.dumps(facts).decode()}"

    async def interrupt(self) -> None:
        """Interrupt the turn that takes the message (a cancelled call or task), never
        another: a message queued behind a running turn waits for the turn that takes it —
        the running one (``claude.message``) or a later one — and that turn is interrupted
        while it runs.  Quietly: the turn may have ended meanwhile, or the run (a paused run's
        CLI gets the interrupt on RESUME)."""
        claude = self.run.live.claude
        if not isinstance(claude, ClaudeSession):
            return
        while (turn := self.turn) is None and not self.ended:
            await self.view.wait_changed()
        if turn is None or turn.ended is not None:
            return
        with contextlib.suppress(JsonRpcError):
            await claude.interrupt(when_paused=True, turn=turn.turn)

    def progress(self, limit: int) -> str:
        """The latest of the turn's text, for a progress message."""
        turn = self.turn
        text = "" if turn is None else turn.text
        return text[-limit:]
