"""Live Claude sessions through MCP: the official SDK client (1.x, over WebSocket) drives the
session tools against the real daemon, the real CLI and the fake Messages API; a raw client
checks task mode.  Every frame the daemon sends passes the conformance checks."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import trio
from ccx_testing import Served, start_daemon, wait_until
from claude_fake_api import PLAIN_TEXT
from claude_world import ClaudeWorld, assert_nothing_left
from mcp_testing import (
    McpClient,
    Recording,
    check_frames,
    mcp_client,
    recording_proxy,
    run_script,
    sdk_python,
)

from cc_executor.executor.client import ClaudeTurnEnded, open_connection, start_claude_session
from cc_executor.protocol.mcp import CLIENT_CAPABILITIES_KEY, PROTOCOL_VERSION_KEY, TASKS_EXTENSION

pytestmark = pytest.mark.slow
MODERN = {PROTOCOL_VERSION_KEY: "2026-07-28", CLIENT_CAPABILITIES_KEY: {}}
MODERN_TASKS = {
    PROTOCOL_VERSION_KEY: "2026-07-28",
    CLIENT_CAPABILITIES_KEY: {"extensions": {TASKS_EXTENSION: {}}},
}


@pytest.fixture(scope="session")
def sdk1() -> Any:
    return sdk_python("mcp1")


async def test_sdk1_starts_steers_interrupts_and_approves_a_session(
    nursery: trio.Nursery, world: ClaudeWorld, sdk1: Any
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(180):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(
                sdk1, "mcp_sdk1_client.py", url, "claude_session", str(world.work)
            )
    first = out["first"]
    assert first["isError"] is False
    assert first["structuredContent"]["turn"] == 1
    assert first["structuredContent"]["text"] == PLAIN_TEXT
    assert first["structuredContent"]["result"]["cost_usd"] > 0
    assert PLAIN_TEXT in first["content"][0]["text"]
    run = first["structuredContent"]["run"]
    second = out["second"]["structuredContent"]
    assert (second["turn"], second["disposition"], second["text"]) == (2, "started", PLAIN_TEXT)
    # The streaming turn: progress carried its text as it came; the interrupt ended it.
    assert any("chunk 2" in (message or "") for message in out["streamed"])
    assert out["interrupted"]["structuredContent"] == {
        "run": run,
        "interrupted": True,
        "turn": 3,
    }
    slow = out["slow"]["structuredContent"]
    assert slow["turn"] == 3
    assert slow["interrupted"] is True
    # The permission request, answered through MCP; a second answer names the first.
    asked = out["asked"]["pending"][0]
    assert asked["tool"] == "Bash"
    assert "via-mcp.txt" in asked["input"]["command"]
    assert out["answer"]["structuredContent"]["decided"] is True
    again = out["again"]
    assert again["isError"] is True
    error = again["structuredContent"]["error"]
    assert error["code"] == -32014
    assert error["data"]["decided_by"].startswith("client:")
    assert error["data"]["behavior"] == "allow"
    assert (world.work / "via-mcp.txt").exists()
    read = out["read"]
    assert read["state"] == "idle"
    assert read["turns"] == 4
    assert read["cost_usd"] > 0
    recorded = {turn["turn"]: turn for turn in read["turns_recorded"]}
    assert "The tool said" in recorded[4]["text"]
    closed = out["closed"]["structuredContent"]
    assert closed["outcome"] == "exited"
    check_frames(record)
    assert_nothing_left(run)


@pytest.fixture(scope="session")
def sdk2() -> Any:
    return sdk_python("mcp2")


async def test_sdk2_drives_a_session_in_the_2026_era(
    nursery: trio.Nursery, world: ClaudeWorld, sdk2: Any
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(180):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(
                sdk2, "mcp_sdk2_client.py", url, "claude_session", str(world.work)
            )
    assert out["protocol_version"] == "2026-07-28"
    assert record.frames[0][1]["method"] == "server/discover"
    started = out["started"]["structuredContent"]
    assert started["state"] == "idle"
    first = out["first"]["structuredContent"]
    assert (first["turn"], first["text"]) == (1, PLAIN_TEXT)
    second = out["second"]["structuredContent"]
    assert second["turn"] == 2
    assert second["text"] == "".join(f"chunk {i} " for i in range(5))
    assert any("chunk" in (message or "") for message in out["progress"])
    read = out["read"]["structuredContent"]
    assert read["turns"] == 2
    assert [turn["turn"] for turn in read["turns_recorded"]] == [1, 2]
    assert out["closed"]["structuredContent"]["outcome"] == "exited"
    for message in record.from_server():
        if "result" in message and "content" in message["result"]:
            assert message["result"]["resultType"] == "complete"
    check_frames(record)
    assert_nothing_left(started["run"])


async def _tool(client: McpClient, name: str, **arguments: Any) -> dict[str, Any]:
    result = await client.result("tools/call", {"name": name, "arguments": arguments})
    assert result["isError"] is False, result
    structured: dict[str, Any] = result["structuredContent"]
    return structured


async def _task_done(client: McpClient, task_id: str) -> dict[str, Any]:
    while True:  # bounded by the test's fail_after
        got: dict[str, Any] = await client.result("tasks/get", {"taskId": task_id})
        if got["status"] != "working":
            return got
        await trio.sleep(0.05)


async def test_turns_as_tasks_one_completed_one_cancelled_by_an_interrupt(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(120):
        async with mcp_client(served.url, record) as client:
            started = await _tool(
                client,
                "claude_start",
                cwd=str(world.work),
                durable=True,
                include_partial_messages=True,  # the turn's text as it is written
            )
            run = started["run"]
            assert started["state"] == "idle"
            created = await client.result(
                "tools/call",
                {
                    "name": "claude_send",
                    "arguments": {"run": run, "content": "say hi"},
                    "task": {"ttl": 60000},
                },
            )
            task_id = created["task"]["taskId"]
            assert created["task"]["status"] == "working"
            assert (await _task_done(client, task_id))["status"] == "completed"
            final = await client.result("tasks/result", {"taskId": task_id})
            assert final["structuredContent"]["text"] == PLAIN_TEXT
            assert final["structuredContent"]["turn"] == 1

            created = await client.result(
                "tools/call",
                {
                    "name": "claude_send",
                    "arguments": {"run": run, "content": "[slow:300]"},
                    "task": {},
                },
            )
            slow_task = created["task"]["taskId"]
            while True:  # the turn streams
                read = await _tool(client, "claude_session", run=run, from_turn=1)
                turns = read["turns_recorded"]
                if turns and "chunk 1" in turns[0]["text"]:
                    break
                await trio.sleep(0.05)
            cancelled = await client.result("tasks/cancel", {"taskId": slow_task})
            assert cancelled["status"] == "cancelled"
            interrupted = await client.result("tasks/result", {"taskId": slow_task})
            assert interrupted["structuredContent"]["interrupted"] is True
            # The session stays: the next message is a new turn of the same process.
            third = await _tool(client, "claude_send", run=run, content="still there?")
            assert (third["turn"], third["text"]) == (3, PLAIN_TEXT)
            # read_output pages through the raw stream-json and the session's notices.
            page = await _tool(client, "read_output", run=run, max_bytes=1_000_000)
            kinds = [event["type"] for event in page["events"]]
            assert kinds.count("claude.turn_ended") == 3
            assert "claude.turn_started" in kinds
            assert "output" in kinds
            closed = await _tool(client, "claude_close", run=run)
            assert closed["outcome"] == "exited"
    check_frames(record)
    assert_nothing_left(run)


async def test_a_turn_whose_cli_dies_says_the_session_ended(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """The CLI killed from outside mid-turn: the turn's answer says the run ended, and its
    state is the run's (an outside client saw "running" there while status said ended)."""
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(120):
        async with mcp_client(served.url, record) as client:
            started = await _tool(client, "claude_start", cwd=str(world.work))
            run = started["run"]
            pid = (await _tool(client, "status", run=run))["pid"]
            created = await client.result(
                "tools/call",
                {
                    "name": "claude_send",
                    "arguments": {"run": run, "content": "[slow:300]"},
                    "task": {},
                },
            )
            task_id = created["task"]["taskId"]
            while True:  # the turn is running: its CLI is killed mid-turn
                if (await _tool(client, "status", run=run))["claude"]["state"] == "running":
                    break
                await trio.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
            await _task_done(client, task_id)
            answer = await client.result("tasks/result", {"taskId": task_id})
            summary = answer["structuredContent"]
            assert (summary["ended"], summary["run_ended"]) == (False, True)
            assert summary["state"] == "ended"
            # The turn did run: the text says the run ended during it, not before it.
            text = answer["content"][0]["text"]
            assert (
                text == f"session {run} ended during turn 1 (message m-1), before the turn's result"
            )
            assert (await _tool(client, "status", run=run))["claude"]["state"] == "ended"
    check_frames(record)
    assert_nothing_left(run)


async def test_session_tools_refuse_bad_arguments_and_runs_that_are_no_session(
    served: Served,
) -> None:
    record = Recording()
    with trio.fail_after(60):
        async with mcp_client(served.url, record) as client:

            async def refused(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
                result = await client.result("tools/call", {"name": name, "arguments": arguments})
                assert result["isError"] is True, result
                return dict(result)

            bad = await refused("claude_send", {"run": "r", "content": 7})
            assert "content" in bad["content"][0]["text"]
            extra = await refused("claude_send", {"run": "r", "content": "hi", "nope": 1})
            assert "unexpected field @ $.nope" in extra["content"][0]["text"]
            mode = await refused(
                "claude_permission", {"run": "r", "request": "q", "behavior": "maybe"}
            )
            assert "behavior" in mode["content"][0]["text"]
            unknown = await refused("claude_interrupt", {"run": "no-such-run"})
            assert unknown["structuredContent"]["error"]["code"] == -32002
            plain = await client.result(
                "tools/call",
                {"name": "execute", "arguments": {"argv": ["sleep", "30"], "wait": False}},
            )
            run = plain["structuredContent"]["run"]
            not_a_session = await refused("claude_send", {"run": run, "content": "hi"})
            error = not_a_session["structuredContent"]["error"]
            assert error["code"] == -32002
            assert "not a Claude session" in error["message"]
            tools = await client.result("tools/list")
            names = {tool["name"] for tool in tools["tools"]}
            assert {"claude_start", "claude_send", "claude_interrupt"} <= names
            assert {"claude_permission", "claude_close", "claude_session"} <= names
    check_frames(record)


async def test_a_2026_turn_task_and_a_cancelled_call_that_interrupts_its_turn(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(120):
        async with mcp_client(served.url, record, initialize=False) as client:
            await client.result("server/discover", {"_meta": MODERN})
            started = await client.result(
                "tools/call",
                {
                    "name": "claude_start",
                    "arguments": {"cwd": str(world.work), "include_partial_messages": True},
                    "_meta": MODERN,
                },
            )
            run = started["structuredContent"]["run"]
            created = await client.result(
                "tools/call",
                {
                    "name": "claude_send",
                    "arguments": {"run": run, "content": "say hi"},
                    "_meta": MODERN_TASKS,
                },
            )
            assert created["resultType"] == "task"
            while True:  # bounded by fail_after
                got = await client.result(
                    "tasks/get", {"taskId": created["taskId"], "_meta": MODERN}
                )
                if got["status"] != "working":
                    break
                await trio.sleep(0.05)
            assert got["status"] == "completed"
            assert got["result"]["structuredContent"]["text"] == PLAIN_TEXT

            # A waiting call, cancelled by the client: its turn is interrupted, no answer.
            call_id = "slow-call"
            await client.send(
                {
                    "id": call_id,
                    "method": "tools/call",
                    "params": {
                        "name": "claude_send",
                        "arguments": {"run": run, "content": "[slow:300]"},
                        "_meta": {**MODERN, "progressToken": "p1"},
                    },
                }
            )
            while not any(
                "chunk 1" in str(n["params"].get("message"))
                for n in client.notifications
                if n["method"] == "notifications/progress"
            ):
                await client.receive()
            await client.send(
                {
                    "method": "notifications/cancelled",
                    "params": {"requestId": call_id, "_meta": MODERN},
                }
            )
            while True:
                read = await client.result(
                    "tools/call",
                    {"name": "claude_session", "arguments": {"run": run}, "_meta": MODERN},
                )
                turns = read["structuredContent"]["turns_recorded"]
                if turns[-1]["ended"]:
                    break
                await trio.sleep(0.05)
            assert turns[-1]["turn"] == 2
            assert turns[-1]["interrupted"] is True
            assert call_id not in client.responses
            assert read["structuredContent"]["state"] == "idle"  # the session stays
            closed = await client.result(
                "tools/call",
                {"name": "claude_close", "arguments": {"run": run}, "_meta": MODERN},
            )
            assert closed["structuredContent"]["outcome"] == "exited"
    check_frames(record)
    assert_nothing_left(run)


async def test_mcp_steers_a_durable_session_started_over_json_rpc(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(120):
        async with open_connection(served.url) as conn:
            session = await start_claude_session(conn, "say hi", cwd=str(world.work), durable=True)
            async for event in session:  # turn 1, over JSON-RPC
                if isinstance(event, ClaudeTurnEnded):
                    break
            async with mcp_client(served.url, record) as client:
                # An agent takes over: its view of the session comes from the journal.
                second = await _tool(client, "claude_send", run=session.id, content="and you?")
                assert (second["turn"], second["text"]) == (2, PLAIN_TEXT)
                read = await _tool(client, "claude_session", run=session.id)
                assert [turn["turn"] for turn in read["turns_recorded"]] == [1, 2]
                assert read["turns"] == 2
            # The JSON-RPC viewer saw the agent's turn too.
            async for event in session:
                if isinstance(event, ClaudeTurnEnded):
                    assert event.turn == 2
                    break
            await session.close()
    check_frames(record)
    assert_nothing_left(session.id)


def _journal_followers() -> int:
    """How many tasks of this trio run are reading a durable run's journal for MCP
    (follow_journal, anywhere in their chain of awaits)."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    tasks = [root]
    while tasks:
        task = tasks.pop()
        tasks.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
        coro: Any = task.coro
        while coro is not None and hasattr(coro, "cr_code"):
            if coro.cr_code.co_name == "follow_journal":
                count += 1
                break
            coro = coro.cr_await
    return count


async def test_connections_that_come_and_go_share_one_follower_of_a_durable_session(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """Each MCP connection that sends to or reads a durable session started elsewhere used
    to start a journal follower of its own, which read the whole journal again and lived,
    with its copy of the session, until the session ended — long after its connection had
    gone. One follower per run, whichever connections use it."""
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(120):
        async with open_connection(served.url) as conn:
            session = await start_claude_session(conn, None, cwd=str(world.work), durable=True)
            for turn in range(1, 4):
                async with mcp_client(served.url, record) as client:
                    sent = await _tool(client, "claude_send", run=session.id, content="hi")
                    read = await _tool(client, "claude_session", run=session.id)
                assert sent["turn"] == turn
                assert [t["turn"] for t in read["turns_recorded"]] == list(range(1, turn + 1))
            for _ in range(3):
                async with mcp_client(served.url, record) as client:
                    read = await _tool(client, "claude_session", run=session.id)
                assert read["turns"] == 3
            await wait_until(lambda: len(served.daemon.sessions) == 1)  # the JSON-RPC one
            assert _journal_followers() == 1
            await session.close()
        await wait_until(lambda: _journal_followers() == 0)
    check_frames(record)
    assert_nothing_left(session.id)


async def test_long_turns_read_back_in_answers_that_fit_a_frame(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """Five turns of 240 to 480 KB of text: the first claude_send's answer and claude_session
    from turn 0 were answers of more than 1 MiB, which a client's WebSocket (1 MiB here, as the
    SDK's) refuses with 1009. A turn's answer keeps the end of its text; claude_session answers
    with the turns that fit and `more_turns`, and the next call goes on from the last."""
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(120):
        async with mcp_client(served.url, record) as client:
            run = (await _tool(client, "claude_start", cwd=str(world.work)))["run"]
            for n in range(5):  # the first turn's answer alone is more than a frame
                chunks = 60000 if n == 0 else 30000
                sent = await _tool(client, "claude_send", run=run, content=f"[chunks:{chunks}]")
                assert sent["ended"] is True
                assert sent["text"].endswith(f"chunk {chunks - 1} ")
            seen: list[int] = []
            while True:
                after = max(seen, default=0)
                read = await _tool(client, "claude_session", run=run, from_turn=after)
                seen += [turn["turn"] for turn in read["turns_recorded"]]
                if not read.get("more_turns"):
                    break
            assert seen == [1, 2, 3, 4, 5]
            await _tool(client, "claude_close", run=run)
    check_frames(record)


async def test_a_claude_run_whose_answer_is_longer_than_a_frame_keeps_its_end(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """The `claude` tool's result carried a 720 KB answer twice (text and the claude summary),
    beside the stdout tail: more than a client's WebSocket takes (1 MiB here, 1009)."""
    served = await start_daemon(nursery, world.config())
    record = Recording()
    with trio.fail_after(120):
        async with mcp_client(served.url, record) as client:
            done = await _tool(client, "claude", prompt="[chunks:90000]", cwd=str(world.work))
            assert done["claude"]["text"].endswith("chunk 89999 ")
            assert done["truncated"] is True
    check_frames(record)
