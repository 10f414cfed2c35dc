"""MCP cancellation and several clients on one live Claude session (the real daemon, the real
CLI, the fake API; raw MCP clients, so that each cancel lands where the test means it to).

A cancelled ``claude_send`` (``notifications/cancelled`` or ``tasks/cancel``) interrupts the
turn that takes its message — when the message is queued behind another client's running turn,
that turn is left alone and the later one that takes the message is interrupted (on main before
the fix the running turn was interrupted, another client's, and the cancelled message's own
turn ran to its end). A ``claude_start`` cancelled while it starts the session ends it: nobody
was told of it (before the fix a durable one lived on, its call unanswered). A cancel repeated
for a call still waiting interrupts once (before the fix each repeat wrote one more interrupt
to the CLI). A call cancelled while a permission request waits: the turn is interrupted and the
CLI withdraws the request. Two clients answering one request at once: one wins, the other is
told who did. A client that vanishes — a real TCP reset (``SO_LINGER {1, 0}``) — with a request
of a durable session pending leaves it pending for another client; with a request of its own
non-durable session pending, the session ends with it. Every frame the daemon sends passes the
conformance checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import trio
from ccx_testing import start_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, assert_nothing_left
from faults_net_testing import reset
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


async def test_a_claude_start_cancelled_while_its_prompt_waits_for_the_cli_ends_the_session(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """A CLI slow to start (a wrapper that sleeps before it runs the real one, as a cold
    start does): the session exists, its `wait: false` prompt waits for the CLI's answer to
    initialize, and the cancel comes then — the session ends, the call gets no answer."""
    wrapper = world.tmp / "slow-claude"
    wrapper.write_text(f'#!/bin/sh\nsleep 2\nexec "{world.cli}" "$@"\n')
    wrapper.chmod(0o755)
    served = await start_daemon(nursery, world.config(binary=str(wrapper)))
    record = Recording()
    with trio.fail_after(BOUND):
        async with mcp_client(served.url, record) as client:
            arguments = {"cwd": str(world.work), "durable": True, "prompt": "hi", "wait": False}
            await _call(client, "prompted", "claude_start", **arguments)
            while True:  # bounded by fail_after: the run exists before its CLI answers
                runs = [row for row in (await _tool(client, "list"))["runs"] if row.get("claude")]
                if runs:
                    break
                await trio.sleep(0.02)
            [row] = runs
            assert row["claude"]["turns"] == 0
            await _cancel(client, "prompted")
            while True:  # bounded by fail_after: before the fix the session lived on
                status = await _tool(client, "status", run=row["run"])
                if status["state"] == "completed":
                    break
                await trio.sleep(0.05)
            assert "prompted" not in client.responses
    check_frames(record)
    assert status["outcome"] == "cancelled"
    await wait_until(lambda: not marked_processes(row["run"]), bound=BOUND)


async def _stdout_lines(client: McpClient, run: str) -> list[dict[str, Any]]:
    """The run's stdout (the CLI's stream-json) through read_output, line by line."""
    data, from_seq = "", 0
    while True:  # bounded by the test's fail_after
        page = await _tool(client, "read_output", run=run, from_seq=from_seq, max_bytes=1 << 20)
        data += "".join(e["data"] for e in page["events"] if e.get("stream") == "stdout")
        from_seq = page["next_seq"]
        if from_seq >= page["last_seq"]:
            return [orjson.loads(line) for line in data.splitlines() if line.strip()]


async def test_a_cancel_repeated_many_times_interrupts_the_turn_once(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """Before the fix each repeat of a cancel for a call still waiting was acted on again:
    one more interrupt written to the CLI (and one more task) per notification."""
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(BOUND):
        async with mcp_client(served.url, record) as client:
            run = (await _tool(client, "claude_start", cwd=str(world.work), durable=True))["run"]
            await _call(client, "slow", "claude_send", run=run, content=SLOW)
            await _until(client, run, lambda view: view["state"] == "running")
            for _ in range(20):
                await _cancel(client, "slow")
            view = await _until(client, run, _ended(1))
            after = await _tool(client, "claude_send", run=run, content="and now?")
            lines = await _stdout_lines(client, run)
            await _tool(client, "claude_close", run=run)
    check_frames(record)
    assert _turns(view)[1]["interrupted"] is True
    assert (after["turn"], after["interrupted"]) == (2, False)
    # The CLI's answers to the daemon's control requests: initialize, and one interrupt.
    answered = [
        line["response"].get("request_id")
        for line in lines
        if line.get("type") == "control_response"
        and str(line["response"].get("request_id", "")).startswith("ccx-")
    ]
    assert answered == ["ccx-1", "ccx-2"]
    assert_nothing_left(run)


async def test_a_call_cancelled_with_a_permission_pending_withdraws_it_and_the_session_stays(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """The cancel interrupts the turn; the CLI withdraws its request (`by: "cancelled"`); a
    second cancel, one for an id never sent and one from another connection change nothing."""
    served = await start_daemon(nursery, world.config(permission_timeout=3600))
    target = world.work / "never"
    records = Recording(), Recording()
    with trio.fail_after(BOUND * 2):
        async with (
            mcp_client(served.url, records[0]) as alice,
            mcp_client(served.url, records[1]) as bob,
        ):
            run = (await _tool(alice, "claude_start", cwd=str(world.work), durable=True))["run"]
            await _call(alice, "asks", "claude_send", run=run, content=f"[tool:touch {target}]")
            asked = await _until(alice, run, lambda view: bool(view["pending"]))
            await _cancel(bob, "asks")  # Bob never sent it: his cancel is nothing to Alice's
            await _cancel(alice, "asks")
            await _cancel(alice, "asks")
            await _cancel(alice, "never-sent")
            view = await _until(alice, run, _ended(1))
            request = asked["pending"][0]["request"]
            late = await alice.result(
                "tools/call",
                {
                    "name": "claude_permission",
                    "arguments": {"run": run, "request": request, "behavior": "allow"},
                },
            )
            again = await _tool(bob, "claude_send", run=run, content="still there?")
            await alice.result("ping")
            assert "asks" not in alice.responses
            await _tool(alice, "claude_close", run=run)
    for record in records:
        check_frames(record)
    assert not target.exists()
    [decided] = _turns(view)[1]["permissions"]
    assert (decided["request"], decided["by"], decided["behavior"]) == (
        request,
        "cancelled",
        "deny",
    )
    assert _turns(view)[1]["interrupted"] is True
    assert late["isError"] is True
    assert late["structuredContent"]["error"]["data"]["decided_by"] == "cancelled"
    assert (again["turn"], again["interrupted"]) == (2, False)
    assert_nothing_left(run)


async def test_two_clients_answer_one_request_at_once_and_one_vanishes_with_another_pending(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """Both answers are sent before either is read: one decides, the other is -32014 naming
    it.  Then the client waiting on the next request resets its TCP connection: the request
    of the durable session stays pending, the other client answers it, the turn ends."""
    served = await start_daemon(nursery, world.config(permission_timeout=3600))
    first, second = world.work / "first", world.work / "second"
    records = Recording(), Recording(), Recording()
    with trio.fail_after(BOUND * 2):
        async with mcp_client(served.url, records[0]) as bob:
            async with mcp_client(served.url, records[1]) as alice:
                start = {"cwd": str(world.work), "durable": True}
                run = (await _tool(alice, "claude_start", **start))["run"]
                await _call(alice, "t1", "claude_send", run=run, content=f"[tool:touch {first}]")
                asked = await _until(bob, run, lambda view: bool(view["pending"]))
                request = asked["pending"][0]["request"]
                answer = {"run": run, "request": request}
                await _call(alice, "a-allow", "claude_permission", **answer, behavior="allow")
                await _call(bob, "b-deny", "claude_permission", **answer, behavior="deny")
                answers = [
                    (await _answer(alice, "a-allow"))["result"],
                    (await _answer(bob, "b-deny"))["result"],
                ]
                first_turn = (await _answer(alice, "t1"))["result"]["structuredContent"]
            async with mcp_client(served.url, records[2]) as carol:
                await _call(carol, "t2", "claude_send", run=run, content=f"[tool:touch {second}]")
                await _until(bob, run, lambda view: bool(view["pending"]))
                reset(carol.ws._stream.socket)  # type: ignore[attr-defined]
                # The daemon has seen her go (Alice's connection has closed too): Bob's is left.
                await wait_until(lambda: len(served.daemon.sessions) == 1, bound=BOUND)
            kept = await _tool(bob, "claude_session", run=run)
            [pending] = kept["pending"]
            await _tool(
                bob, "claude_permission", run=run, request=pending["request"], behavior="allow"
            )
            view = await _until(bob, run, _ended(2))
            await _tool(bob, "claude_close", run=run)
    check_frames(records[0])
    check_frames(records[1])
    won = [a for a in answers if not a["isError"]]
    lost = [a for a in answers if a["isError"]]
    assert len(won) == 1, answers
    assert len(lost) == 1, answers
    error = lost[0]["structuredContent"]["error"]
    decided = _turns(view)[1]["permissions"][0]
    assert error["code"] == -32014
    assert error["data"]["decided_by"] == decided["by"]
    assert error["data"]["behavior"] == decided["behavior"]
    assert first.exists() == (decided["behavior"] == "allow")
    assert first_turn["ended"] is True
    assert kept["state"] == "requires_action"
    [by_bob] = _turns(view)[2]["permissions"]
    assert (by_bob["request"], by_bob["behavior"]) == (pending["request"], "allow")
    assert second.exists()
    assert_nothing_left(run)


async def test_a_client_reset_with_a_request_of_its_own_session_pending_ends_the_session(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """A non-durable session ends with the connection that started it, a TCP reset too: the
    request is withdrawn with it (nothing waits out the timeout), the tool does not run, and
    a client that was watching sees the run cancelled with nothing pending."""
    served = await start_daemon(nursery, world.config(permission_timeout=3600))
    target = world.work / "never"
    records = Recording(), Recording()
    with trio.fail_after(BOUND):
        async with mcp_client(served.url, records[0]) as bob:
            async with mcp_client(served.url, records[1]) as alice:
                run = (await _tool(alice, "claude_start", cwd=str(world.work)))["run"]
                await _call(alice, "asks", "claude_send", run=run, content=f"[tool:touch {target}]")
                await _until(bob, run, lambda view: bool(view["pending"]))
                reset(alice.ws._stream.socket)  # type: ignore[attr-defined]
            while True:  # bounded by fail_after
                status = await _tool(bob, "status", run=run)
                if status["state"] == "completed":
                    break
                await trio.sleep(0.05)
            await wait_until(lambda: not marked_processes(run), bound=BOUND)
    check_frames(records[0])
    assert status["outcome"] == "cancelled"
    assert status["claude"]["pending"] == []
    assert status["claude"]["state"] == "ended"
    assert not target.exists()
