"""MCP cancellation and several clients on one live Claude session (the real daemon, the real
CLI, the fake API; raw MCP clients, so that each cancel lands where the test means it to).

A cancelled ``claude_send`` (``notifications/cancelled`` or ``tasks/cancel``) interrupts the
turn that takes its message — when the message is queued behind another client's running
turn, that turn is left alone and the later one that takes the message is interrupted (on
main before the fix the running turn was interrupted, another client's, and the cancelled
message's own turn ran to its end).  A ``claude_start`` cancelled while it starts the session
ends it: nobody was told of it (before the fix a durable one lived on, its call unanswered).
Every frame the daemon sends passes the conformance checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
from ccx_testing import start_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, assert_nothing_left
from mcp_testing import McpClient, Recording, check_frames, mcp_client

from cc_executor.supervision.testing import marked_processes

pytestmark = pytest.mark.slow
SLOW = "[slow:30]"  # a turn of three seconds: "chunk 0 " ... "chunk 29 "
SLOW_TEXT = "".join(f"chunk {i} " for i in range(30))


async def _tool(client: McpClient, name: str, **arguments: Any) -> dict[str, Any]:
    result = await client.result("tools/call", {"name": name, "arguments": arguments})
    assert result["isError"] is False, result
    structured: dict[str, Any] = result["structuredContent"]
    return structured


async def _call(client: McpClient, call_id: str, name: str, **arguments: Any) -> None:
    """Send a tools/call without waiting for its answer."""
    params = {"name": name, "arguments": arguments}
    await client.send({"id": call_id, "method": "tools/call", "params": params})


async def _cancel(client: McpClient, call_id: Any) -> None:
    await client.send({"method": "notifications/cancelled", "params": {"requestId": call_id}})


async def _answer(client: McpClient, call_id: str) -> dict[str, Any]:
    while call_id not in client.responses:  # bounded by the test's fail_after
        await client.receive()
    return client.responses[call_id]


async def _until(
    client: McpClient, run: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    while True:  # bounded by the test's fail_after
        view = await _tool(client, "claude_session", run=run)
        if done(view):
            return view
        await trio.sleep(0.05)


def _turns(view: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {turn["turn"]: turn for turn in view["turns_recorded"]}


def _ended(turn: int) -> Callable[[dict[str, Any]], bool]:
    return lambda view: view["state"] == "idle" and _turns(view).get(turn, {}).get("ended", False)


async def test_a_cancelled_call_for_a_queued_message_interrupts_its_own_turn_not_the_running_one(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    records = Recording(), Recording()
    with trio.fail_after(BOUND * 2):
        async with (
            mcp_client(served.url, records[0]) as alice,
            mcp_client(served.url, records[1]) as bob,
        ):
            run = (await _tool(alice, "claude_start", cwd=str(world.work), durable=True))["run"]
            await _call(bob, "bob-turn", "claude_send", run=run, content=SLOW, id="bob-msg")
            await _until(alice, run, lambda view: view["state"] == "running")
            # Alice's message waits behind Bob's running turn; she cancels her waiting call.
            await _call(alice, "alice-turn", "claude_send", run=run, content=SLOW, id="alice-msg")
            await alice.result("ping")
            await _cancel(alice, "alice-turn")
            bobs = (await _answer(bob, "bob-turn"))["result"]["structuredContent"]
            view = await _until(alice, run, _ended(2))
            assert "alice-turn" not in alice.responses
            await _tool(alice, "claude_close", run=run)
    for record in records:
        check_frames(record)
    # Bob's turn ran to its end; Alice's, the one that took her message, was interrupted.
    assert (bobs["turn"], bobs["interrupted"], bobs["text"]) == (1, False, SLOW_TEXT)
    turns = _turns(view)
    assert turns[1]["messages"] == ["bob-msg"]
    assert turns[1]["interrupted"] is False
    assert turns[2]["messages"] == ["alice-msg"]
    assert turns[2]["interrupted"] is True
    assert_nothing_left(run)


async def test_a_cancelled_task_for_a_queued_message_interrupts_its_own_turn_not_the_running_one(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    records = Recording(), Recording()
    with trio.fail_after(BOUND * 2):
        async with (
            mcp_client(served.url, records[0], initialize=False) as alice,
            mcp_client(served.url, records[1]) as bob,
        ):
            await alice.result("initialize", {"protocolVersion": "2025-11-25"})
            await alice.send({"method": "notifications/initialized"})
            run = (await _tool(alice, "claude_start", cwd=str(world.work), durable=True))["run"]
            await _call(bob, "bob-turn", "claude_send", run=run, content=SLOW, id="bob-msg")
            await _until(alice, run, lambda view: view["state"] == "running")
            created = await alice.result(
                "tools/call",
                {
                    "name": "claude_send",
                    "arguments": {"run": run, "content": SLOW, "id": "alice-msg"},
                    "task": {},
                },
            )
            task_id = created["task"]["taskId"]
            cancelled = await alice.result("tasks/cancel", {"taskId": task_id})
            bobs = (await _answer(bob, "bob-turn"))["result"]["structuredContent"]
            view = await _until(alice, run, _ended(2))
            await _tool(alice, "claude_close", run=run)
    for record in records:
        check_frames(record)
    assert cancelled["status"] == "cancelled"
    assert (bobs["turn"], bobs["interrupted"], bobs["text"]) == (1, False, SLOW_TEXT)
    turns = _turns(view)
    assert (turns[1]["messages"], turns[1]["interrupted"]) == (["bob-msg"], False)
    assert (turns[2]["messages"], turns[2]["interrupted"]) == (["alice-msg"], True)
    assert_nothing_left(run)


async def test_a_claude_start_cancelled_while_it_starts_ends_the_session(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(BOUND):
        async with mcp_client(served.url, record) as client:
            cwd = str(world.work)
            # Durable, so that the connection's end would not end them: only the cancel does.
            await _call(client, "idle", "claude_start", cwd=cwd, durable=True)
            await _cancel(client, "idle")
            await _call(
                client, "prompted", "claude_start", cwd=cwd, durable=True, prompt="hi", wait=False
            )
            await _cancel(client, "prompted")

            while True:  # bounded by fail_after: before the fix both sessions lived on
                runs = [row for row in (await _tool(client, "list"))["runs"] if row.get("claude")]
                if len(runs) == 2 and all(row["state"] == "completed" for row in runs):
                    break
                await trio.sleep(0.05)
            await client.result("ping")
            assert "idle" not in client.responses
            assert "prompted" not in client.responses
    check_frames(record)
    for row in runs:
        assert row["outcome"] == "cancelled", row
        await wait_until(lambda run=row["run"]: not marked_processes(run), bound=BOUND)
