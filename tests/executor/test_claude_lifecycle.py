"""A Claude run is an ordinary run: durable like any, and over MCP watched and claimed as over
JSON-RPC (the real CLI against the fake API; MCP through the official SDK 1.x client)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio
from ccx_testing import open_client, start_daemon
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, start, typed
from durable_testing import open_durable_client
from mcp_testing import check_frames, recording_proxy, run_script, sdk_python


async def test_a_durable_claude_run_survives_its_client_and_replays_from_any_seq(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as first:
            result = await first.call("claude", prompt="say hi", cwd=str(world.work), durable=True)
            assert result["status"] == "started"
            assert result["durable"] is True
            run = result["run"]
        # The client is gone; the run goes on. Another follows it from the start.
        async with open_durable_client(served.url) as second:
            await second.attach(run, 0)
            whole = await second.wait_completed(run)
            status = await second.call("status", run=run)
        completed = whole.completed
        assert completed is not None
        assert completed["status"] == "completed"
        assert completed["claude"]["has_result"] is True
        assert completed["claude"]["subtype"] == "success"
        assert status["durable"] is True
        assert status["claude"]["has_result"] is True
        kinds = [event["type"] for event in typed(second, run)]
        assert kinds[0] == "init"
        assert "result" in kinds
        # From any seq: exactly the events after it, the same bytes.
        middle = whole.events[len(whole.events) // 2]["seq"]
        async with open_durable_client(served.url) as third:
            await third.attach(run, middle)
            tail = await third.wait_completed(run)
    assert [e["seq"] for e in tail.events] == [e["seq"] for e in whole.events if e["seq"] > middle]
    replayed = [e for e in whole.events if e["seq"] > middle and e["method"] == "process.output"]
    assert b"".join(_bytes(e) for e in replayed) == bytes(tail.stdout) + bytes(tail.stderr)
    assert_nothing_left(run)


def _bytes(event: dict[str, Any]) -> bytes:
    return str(event["data"]).encode()


@pytest.fixture(scope="session")
def sdk1() -> Any:
    return sdk_python("mcp1")


@pytest.mark.slow
async def test_over_mcp_a_claude_run_has_the_watchdog_and_the_session_claim(
    nursery: trio.Nursery, world: ClaudeWorld, sdk1: Any
) -> None:
    served = await start_daemon(nursery, world.config())
    session_id = str(uuid.uuid4())
    with trio.fail_after(120):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(
                sdk1, "mcp_sdk1_client.py", url, "claude", str(world.work), session_id
            )
    stalled = out["stalled"]["structuredContent"]
    assert stalled["state"] in ("running", "completed")
    # The watchdog (idle_timeout 3 s, cancel) ended the stalled call's run.
    status = out["status"]
    assert status["state"] == "completed"
    assert status["outcome"] == "cancelled"
    assert status["reason"].startswith("watchdog")
    assert status["claude"]["watchdog_fired"] >= 1
    # While it held its Claude session, a second call for the same session was refused.
    busy = out["busy"]
    assert busy["isError"] is True
    assert busy["structuredContent"]["error"]["data"]["claude_session"] == session_id
    plain = out["plain"]["structuredContent"]
    assert out["plain"]["isError"] is False
    assert plain["claude"]["has_result"] is True
    check_frames(record)
    assert_nothing_left(stalled["run"])


@pytest.mark.slow
async def test_over_mcp_a_lingering_cli_is_ended_by_the_post_result_grace(
    nursery: trio.Nursery, world: ClaudeWorld, sdk1: Any
) -> None:
    wrapper, _ = world.lingering_cli()
    served = await start_daemon(
        nursery, world.config(binary=str(wrapper), post_result_grace=0.5, interrupt_grace=0.5)
    )
    with trio.fail_after(120):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk1, "mcp_sdk1_client.py", url, "linger", str(world.work))
    result = out["result"]
    assert result["isError"] is False
    summary = result["structuredContent"]
    assert summary["claude"]["lingered"] is True
    assert summary["status"] == "completed"
    assert summary["outcome"] == "cancelled"
    check_frames(record)
    assert_nothing_left(summary["run"])


@pytest.mark.slow
async def test_a_claude_run_over_json_rpc_and_one_over_mcp_share_the_claim(
    nursery: trio.Nursery, world: ClaudeWorld, sdk1: Any
) -> None:
    """One Claude session, one run at a time, whichever protocol asks: JSON-RPC holds it, an
    MCP call resuming it is refused."""
    served = await start_daemon(nursery, world.config())
    session_id = str(uuid.uuid4())
    with trio.fail_after(120):
        async with open_client(served.url) as client:
            first = await start(
                client, prompt="[stall]", session_id=session_id, cwd=str(world.work)
            )
            async with recording_proxy(served.url) as (url, record):
                out = await run_script(
                    sdk1, "mcp_sdk1_client.py", url, "resume", str(world.work), session_id
                )
            await client.call("control", type="CANCEL", run=first)
            await client.wait_completed(first)
    result = out["result"]
    assert result["isError"] is True
    error = result["structuredContent"]["error"]
    assert error["data"] == {
        "claude_session": session_id,
        "run": first,
        "state": "busy",
        "rule": "claude.busy_session",
    }
    check_frames(record)
    assert_nothing_left(first)
