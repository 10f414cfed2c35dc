"""The turn bookkeeping of a Claude session (executor/claude/turns.py), driven by a model of
the CLI: whatever the order of sends, tool boundaries and turn ends, every message is
accounted for exactly once — as one that started a turn or as one a running turn took — turn
numbers run 1, 2, 3... each started once and ended once, and per-turn costs add up to the
process's total."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_executor.executor.claude.turns import Turns
from cc_executor.protocol import InvalidParams
from cc_executor.protocol.claude import (
    ClaudeMessageTaken,
    ClaudeTurnEnded,
    ClaudeTurnStarted,
    Result,
    SessionNotice,
)


def result(total: float) -> Result:
    return Result(
        subtype="success", is_error=False, result="ok", session_id="s", total_cost_usd=total,
        usage={"input_tokens": 10, "output_tokens": 5}, num_turns=1, duration_ms=1,
        duration_api_ms=1, terminal_reason="completed", api_error_status=None,
        stop_reason=None, permission_denials=[],
    )  # fmt: skip


class FakeCli:
    """What the CLI does with the messages written to it (as observed with 2.1.197): idle,
    it starts a turn with the oldest waiting message (init, then its replay); in a turn it
    may take a waiting message at a tool boundary (a replay), or end the turn (result)."""

    def __init__(self, turns: Turns) -> None:
        self.turns = turns
        self.waiting: deque[str] = deque()
        self.running = False
        self.total = 0.0

    def written(self, key: str) -> None:
        self.waiting.append(key)

    def step(self, action: str) -> None:
        if not self.running:
            if self.waiting:
                self.running = True
                self.turns.init()
                self.turns.replayed(self.waiting.popleft())
            return
        if action == "take" and self.waiting:
            self.turns.replayed(self.waiting.popleft())
        elif action == "end":
            self.total = round(self.total + 0.25, 9)
            self.running = False
            self.turns.result(result(self.total))

    def settle(self) -> None:
        while self.running or self.waiting:
            self.step("end")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["send", "take", "end", "idle"]), max_size=40))
def test_every_message_is_accounted_for_once(actions: list[str]) -> None:
    posted: list[SessionNotice] = []
    turns = Turns("r", posted.append, lambda: None)
    cli = FakeCli(turns)
    sent: list[str] = []
    for action in actions:
        if action == "send":
            key, reply = turns.message(None)
            assert reply.disposition == ("queued" if cli.running or cli.waiting else "started")
            sent.append(reply.message)
            cli.written(key)
        else:
            cli.step(action)
    cli.settle()
    started = [n for n in posted if isinstance(n, ClaudeTurnStarted)]
    ended = [n for n in posted if isinstance(n, ClaudeTurnEnded)]
    taken = [n for n in posted if isinstance(n, ClaudeMessageTaken)]
    accounted = [m for n in started for m in n.messages] + [n.message for n in taken]
    assert sorted(accounted) == sorted(sent)
    assert len(accounted) == len(set(accounted))
    assert [n.turn for n in started] == list(range(1, len(started) + 1))
    assert [n.turn for n in ended] == [n.turn for n in started]
    for notice in taken:  # taken by a turn that had started and not yet ended
        index = posted.index(notice)
        last_start = max(
            i for i, n in enumerate(posted[:index]) if isinstance(n, ClaudeTurnStarted)
        )
        assert not any(isinstance(n, ClaudeTurnEnded) for n in posted[last_start:index])
    assert not turns.running
    assert turns.turns == len(ended)
    costs: list[Any] = [n.result["cost_usd"] for n in ended]
    assert round(sum(costs), 9) == turns.cost_usd == cli.total
    assert turns.usage["output_tokens"] == 5 * len(ended)


def test_a_message_id_is_used_once() -> None:
    turns = Turns("r", lambda notice: None, lambda: None)
    turns.message("mine")
    with pytest.raises(InvalidParams, match="was used already"):
        turns.message("mine")


def test_a_generated_message_id_never_collides_with_a_clients() -> None:
    """A client that names its message "m-2" does not make the next unnamed send fail with
    an id it never chose."""
    turns = Turns("r", lambda notice: None, lambda: None)
    assert turns.message("m-2")[1].message == "m-2"
    assert turns.message(None)[1].message == "m-3"
    assert turns.message("m-4")[1].message == "m-4"
    assert turns.message(None)[1].message == "m-5"
    with pytest.raises(InvalidParams, match="was used already"):
        turns.message("m-5")
