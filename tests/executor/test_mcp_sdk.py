"""MCP end to end with the official SDKs (1.x WebSocket client; 2.x over a test transport).

Every frame the daemon sends them passes through a recording proxy and is checked for
conformance (mcp_testing.check_frames).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from ccx_testing import Served
from mcp_testing import (
    check_frames,
    recording_proxy,
    run_node_script,
    run_script,
    sdk_python,
    ts_sdk_node,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def sdk1() -> Any:
    return sdk_python("mcp1")


async def test_sdk1_initializes_lists_calls_with_progress(served: Served, sdk1: Any) -> None:
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk1, "mcp_sdk1_client.py", url, "basic")
    assert record.subprotocols == ["mcp"]
    assert out["init"]["protocolVersion"] == "2025-11-25"
    assert out["init"]["serverInfo"]["name"] == "cc-executor"
    names = [tool["name"] for tool in out["tools"]]
    assert {"execute", "claude", "control", "status", "list", "read_output"} <= set(names)
    result = out["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["exit_code"] == 0
    assert result["structuredContent"]["stdout"] == "".join(f"line {i}\n" for i in range(1, 6))
    assert len(out["progress"]) >= 2
    assert any("line" in (p["message"] or "") for p in out["progress"])
    bad = out["bad"]
    assert bad["isError"] is True
    assert "argv" in bad["content"][0]["text"]
    counts = check_frames(record)
    assert counts["progress"] == len(out["progress"])


async def test_sdk1_cancel_ends_the_run(served: Served, sdk1: Any) -> None:
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk1, "mcp_sdk1_client.py", url, "cancel")
    assert out["status"]["state"] == "completed"
    assert out["status"]["outcome"] == "cancelled"
    check_frames(record)


async def test_sdk1_gets_results_larger_than_its_websocket_takes_in_frames_it_takes(
    served: Served, sdk1: Any
) -> None:
    """The SDK's WebSocket client refuses messages over 1 MiB (closing with 1009): a run's
    tails of control characters (2 x 64 KiB, six bytes each in JSON, twice in the result) and
    a read_output page of the 1 MiB allowed (twice in the result) were 1.5 and 2 MiB."""
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk1, "mcp_sdk1_client.py", url, "big")
    escaped = out["escaped"]["structuredContent"]
    assert escaped["exit_code"] == 0
    assert escaped["truncated"] is True  # the tails were cut shorter to fit
    assert set(escaped["stdout"]) == {"\x01"}
    assert set(escaped["stderr"]) == {"\x1b"}
    assert out["read_exact"] is True
    assert out["pages"] >= 3
    check_frames(record)


async def test_sdk1_lists_more_runs_than_one_frame_holds(served: Served, sdk1: Any) -> None:
    """`list` answers with the newest runs that fit one frame and says how many it left out
    (it was a 2.4 MB answer, and the SDK's connection closed with 1009)."""
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk1, "mcp_sdk1_client.py", url, "big_list")
    listed = out["list"]
    shown = [r["run"] for r in listed["runs"]]
    assert listed["omitted"] > 0
    assert shown == out["started"][listed["omitted"] :]  # the newest, oldest first
    check_frames(record)


async def test_sdk1_runs_a_command_of_long_arguments_and_reads_its_status(
    served: Served, sdk1: Any
) -> None:
    """The status echoes the argv, twice (as text too): eight 120 KB arguments were an answer
    of 2 MB, and the SDK's connection closed with 1009. It shows each argument cut
    (`argv_truncated`) when they would not fit."""
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk1, "mcp_sdk1_client.py", url, "long_args")
    assert out["done"]["structuredContent"]["exit_code"] == 0
    status = out["status"]
    assert status["isError"] is False
    shown = status["structuredContent"]
    assert shown["argv_truncated"] is True
    assert shown["argv"][0] == "true"
    assert len(shown["argv"]) == 9
    [listed] = out["list"]["structuredContent"]["runs"]
    assert listed["argv_truncated"] is True
    check_frames(record)


@pytest.fixture(scope="session")
def sdk2() -> Any:
    return sdk_python("mcp2")


async def test_sdk2_discovers_lists_calls_with_progress(served: Served, sdk2: Any) -> None:
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk2, "mcp_sdk2_client.py", url, "basic")
    assert out["protocol_version"] == "2026-07-28"
    first = record.frames[0][1]
    assert first["method"] == "server/discover"  # no initialize in the modern era
    assert {"execute", "read_output"} <= {tool["name"] for tool in out["tools"]}
    result = out["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["stdout"] == "".join(f"line {i}\n" for i in range(1, 6))
    assert len(out["progress"]) >= 2
    for message in record.from_server():
        if "result" in message:
            assert message["result"]["resultType"] == "complete"
    check_frames(record)


async def test_sdk2_cancel_ends_the_run(served: Served, sdk2: Any) -> None:
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk2, "mcp_sdk2_client.py", url, "cancel")
    assert out["status"]["outcome"] == "cancelled"
    check_frames(record)


@pytest.fixture(scope="session")
def ts_node() -> list[str]:
    return ts_sdk_node()


async def test_ts_sdk_gets_tool_failures_as_results(served: Served, ts_node: list[str]) -> None:
    """The TypeScript SDK checks structured content against the tool's outputSchema on error
    results too: a failure's `{error}` did not match, and the SDK threw -32602 instead of
    returning the isError result."""
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_node_script(ts_node, "mcp_ts_client.mjs", url, "failures")
    assert out["server"]["name"] == "cc-executor"
    calls = out["calls"]
    assert [name for name, got in calls.items() if "thrown" in got] == []
    assert calls["ok"]["isError"] is False
    assert calls["read_ok"]["isError"] is False
    assert calls["exit3"]["structuredContent"]["exit_code"] == 3
    failed = {name: got for name, got in calls.items() if name not in {"ok", "read_ok", "exit3"}}
    assert all(got["isError"] for got in failed.values())
    assert failed["not_found"]["structuredContent"]["error"]["code"] == -32006
    assert failed["control"]["structuredContent"]["error"]["code"] == -32002
    assert failed["control_ended"]["structuredContent"]["error"]["code"] == -32005
    check_frames(record)


async def test_ts_sdk_abort_at_once_ends_the_run(served: Served, ts_node: list[str]) -> None:
    with trio.fail_after(90):
        async with recording_proxy(served.url) as (url, record):
            out = await run_node_script(ts_node, "mcp_ts_client.mjs", url, "abort")
    assert "changed my mind" in out["aborted"]["thrown"]
    assert [(r["state"], r["outcome"]) for r in out["runs"]] == [("completed", "cancelled")]
    check_frames(record)
