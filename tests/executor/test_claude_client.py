"""The client library's Claude sessions: typed calls and events against the real daemon, the
real CLI and the fake Messages API (tests/claude_world.py)."""

from __future__ import annotations

import pytest
import trio
from ccx_testing import start_daemon
from claude_fake_api import PLAIN_TEXT
from claude_world import BOUND, ClaudeWorld, assert_nothing_left

from cc_executor.executor.client import (
    AlreadyDecidedError,
    ClaudePermissionDecided,
    ClaudePermissionRequest,
    ClaudeSession,
    ClaudeStateChanged,
    ClaudeTurnEnded,
    ClaudeTurnStarted,
    Completed,
    InvalidParamsError,
    SessionEvent,
    attach_claude_session,
    open_connection,
    resume_claude_session,
    start_claude_session,
)
from cc_executor.executor.client.claude import CLAUDE_EVENTS
from cc_executor.protocol.claude import AssistantText, Result
from cc_executor.protocol.claude.text import AssistantTextStream


async def until_turn_ended(session: ClaudeSession, seen: list[SessionEvent]) -> ClaudeTurnEnded:
    """Take the session's events (into `seen`) up to the end of a turn."""
    async for event in session:
        seen.append(event)
        if isinstance(event, ClaudeTurnEnded):
            return event
    raise AssertionError("the session ended before its turn")


async def until(session: ClaudeSession, kind: type, seen: list[SessionEvent]) -> object:
    async for event in session:
        seen.append(event)
        if isinstance(event, kind):
            return event
    raise AssertionError(f"the session ended before a {kind.__name__}")


def text_of(events: list[SessionEvent]) -> str:
    stream = AssistantTextStream()
    return "".join(stream.feed(e) for e in events if isinstance(e, AssistantText))


async def test_two_turns_in_one_process_then_close(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_connection(served.url) as conn:
            session = await start_claude_session(conn, "say hi", cwd=str(world.work))
            assert session.run.info.get("session") is True
            first: list[SessionEvent] = []
            ended = await until_turn_ended(session, first)
            assert ended.turn == 1
            assert not ended.interrupted
            assert ended.result["is_error"] is False
            cost = ended.result["cost_usd"]
            assert isinstance(cost, float)
            assert cost > 0
            assert text_of(first) == PLAIN_TEXT
            assert any(isinstance(e, ClaudeTurnStarted) and e.turn == 1 for e in first)
            assert any(isinstance(e, Result) for e in first)  # parsed from stdout
            pid = session.run.pid
            assert isinstance(await session.set_model("claude-fake-next"), dict)
            assert isinstance(await session.set_permission_mode("acceptEdits"), dict)
            with pytest.raises(InvalidParamsError):
                await session.set_permission_mode("anything-goes")
            sent = await session.send("and again")
            assert (sent.turn, sent.disposition) == (2, "started")
            second: list[SessionEvent] = []
            ended = await until_turn_ended(session, second)
            assert ended.turn == 2
            started = next(e for e in second if isinstance(e, ClaudeTurnStarted))
            assert started.messages == (sent.message,)
            assert world.api.requests[-1]["body"]["model"] == "claude-fake-next"
            assert (await session.status()).pid == pid  # one process for both turns
            status = await session.status()
            assert status.claude is not None
            assert status.claude["turns"] == 2
            closed = await session.close()
            assert closed["outcome"] == "exited"
            rest = [event async for event in session]
            assert isinstance(rest[-1], Completed)
            states = [e.state for e in first + second if isinstance(e, ClaudeStateChanged)]
            assert states[:2] == ["running", "idle"]
    assert_nothing_left(session.id)


async def test_permission_allowed_here_seen_and_decided_for_a_second_viewer(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    made = world.work / "allowed.txt"
    with trio.fail_after(BOUND):
        async with open_connection(served.url) as conn, open_connection(served.url) as other:
            session = await start_claude_session(conn, cwd=str(world.work), durable=True)
            viewer = await attach_claude_session(other, session.id)
            await session.send(f"please [tool:touch {made}]")
            seen: list[SessionEvent] = []
            request = await until(session, ClaudePermissionRequest, seen)
            assert isinstance(request, ClaudePermissionRequest)
            assert request.tool == "Bash"
            assert isinstance(request.input, dict)
            assert str(made) in str(request.input["command"])
            watched: list[SessionEvent] = []
            also = await until(viewer, ClaudePermissionRequest, watched)
            assert isinstance(also, ClaudePermissionRequest)
            assert also.request == request.request
            await session.allow(request.request)
            decided = await until(viewer, ClaudePermissionDecided, watched)
            assert isinstance(decided, ClaudePermissionDecided)
            assert decided.behavior == "allow"
            assert decided.by.startswith("client:")
            assert decided.by.endswith("/" + conn.greeting.session_id)
            with pytest.raises(AlreadyDecidedError) as second:
                await viewer.deny(request.request, "too late")
            assert second.value.decided_by == decided.by
            assert second.value.behavior == "allow"
            ended = await until_turn_ended(session, seen)
            assert "The tool said" in str(ended.result.get("result"))
            assert made.exists()
            await session.close()
    assert_nothing_left(session.id)


async def test_interrupt_mid_turn_keeps_the_session(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_connection(served.url) as conn:
            session = await start_claude_session(
                conn, "[slow:200]", cwd=str(world.work), include_partial_messages=True
            )
            seen: list[SessionEvent] = []
            stream, text = AssistantTextStream(), ""
            async for event in session:  # the turn is streaming
                seen.append(event)
                if isinstance(event, CLAUDE_EVENTS):
                    text += stream.feed(event)
                if "chunk 2" in text:
                    break
            assert await session.interrupt() == 1
            ended = await until_turn_ended(session, seen)
            assert ended.turn == 1
            assert ended.interrupted
            await session.send("still there?")
            ended = await until_turn_ended(session, seen)
            assert ended.turn == 2
            assert not ended.interrupted
            assert ended.result["result"] == PLAIN_TEXT
            await session.close()
    assert_nothing_left(session.id)


async def test_resume_continues_a_closed_session_in_a_new_process(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_connection(served.url) as conn:
            first = await start_claude_session(conn, "remember the word zebra", cwd=str(world.work))
            ended = await until_turn_ended(first, [])
            session_id = ended.result["session_id"]
            assert isinstance(session_id, str)
            await first.close()
            again = await resume_claude_session(
                conn, session_id, "which word?", cwd=str(world.work)
            )
            assert again.id != first.id
            await until_turn_ended(again, [])
            status = await again.status()
            assert status.claude is not None
            assert status.claude["session_id"] == session_id
            assert f"--resume={session_id}" in status.argv
            await again.close()
    # The new process sent the earlier conversation to the API.
    assert "remember the word zebra" in str(world.api.requests[-1]["body"]["messages"])
    assert_nothing_left(again.id)


async def test_leaving_the_loop_early_loses_no_event(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_connection(served.url) as conn:
            session = await start_claude_session(conn, "say hi", cwd=str(world.work))
            seen: list[SessionEvent] = []
            while not any(isinstance(event, ClaudeTurnEnded) for event in seen):
                async for event in session:  # one event per loop, then leave it
                    seen.append(event)
                    break
            kinds = [type(event).__name__ for event in seen]
            # Every typed event of the turn's stdout is there, in order, each once.
            assert kinds.count("Init") == 1
            # One replayed user line is two typed events: the second must not be lost.
            assert kinds.count("Replayed") == 1
            assert kinds[kinds.index("Replayed") + 1] == "UserText"
            assert kinds.count("AssistantText") == 1
            assert kinds.count("Result") == 1
            assert kinds.index("AssistantText") < kinds.index("Result")
            assert kinds.index("Result") < kinds.index("ClaudeTurnEnded")
            await session.close()
    assert_nothing_left(session.id)
