"""MCP sessions over real loopback WebSockets with a raw client: tasks, heartbeats, errors.

The client records both directions and every test ends with mcp_testing.check_frames.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest
import trio
from ccx_testing import Served, alive, make_config, open_client, start_daemon
from mcp_testing import McpClient, Recording, check_frames, mcp_client
from trio_websocket import ConnectionClosed, open_websocket_url

from cc_executor.executor.config.mcp import McpConfig
from cc_executor.protocol.mcp import CLIENT_CAPABILITIES_KEY, PROTOCOL_VERSION_KEY, TASKS_EXTENSION

MODERN = {PROTOCOL_VERSION_KEY: "2026-07-28", CLIENT_CAPABILITIES_KEY: {}}
MODERN_TASKS = {
    PROTOCOL_VERSION_KEY: "2026-07-28",
    CLIENT_CAPABILITIES_KEY: {"extensions": {TASKS_EXTENSION: {}}},
}


async def test_a_task_survives_its_client_and_another_polls_it(served: Served) -> None:
    record = Recording()
    argv = ["sh", "-c", "sleep 0.5; echo done"]
    with trio.fail_after(30):
        async with mcp_client(served.url, record) as first:
            created = await first.result(
                "tools/call",
                {"name": "execute", "arguments": {"argv": argv}, "task": {"ttl": 60000}},
            )
            task = created["task"]
            assert task["status"] == "working"
            assert len(task["taskId"]) >= 40  # 256 random bits
        # The first client is gone; the run goes on.
        async with mcp_client(served.url, record) as second:
            for _ in range(200):
                got = await second.result("tasks/get", {"taskId": task["taskId"]})
                if got["status"] != "working":
                    break
                await trio.sleep(0.05)
            assert got["status"] == "completed"
            final = await second.result("tasks/result", {"taskId": task["taskId"]})
            assert final["isError"] is False
            assert final["structuredContent"]["stdout"] == "done\n"
            listed = await second.result("tasks/list")
            assert task["taskId"] in [t["taskId"] for t in listed["tasks"]]
            again = await second.request("tasks/cancel", {"taskId": task["taskId"]})
            assert again["error"]["code"] == -32602  # terminal tasks cannot be cancelled
            unknown = await second.request("tasks/get", {"taskId": "no-such-task"})
            assert unknown["error"]["code"] == -32602
            assert unknown["error"]["data"] == {"taskId": "no-such-task"}  # as asked for
    check_frames(record)


async def test_a_paused_task_stays_working_and_cancel_ends_it(served: Served) -> None:
    record = Recording()
    with trio.fail_after(30):
        async with mcp_client(served.url, record) as client:
            created = await client.result(
                "tools/call",
                {"name": "execute", "arguments": {"argv": ["sleep", "60"]}, "task": {}},
            )
            task_id = created["task"]["taskId"]
            run = created["task"]["statusMessage"].split()[1]
            paused = await client.result(
                "tools/call", {"name": "control", "arguments": {"run": run, "action": "pause"}}
            )
            assert paused["structuredContent"]["status"] == "paused"
            got = await client.result("tasks/get", {"taskId": task_id})
            assert got["status"] == "working"
            assert "paused" in got["statusMessage"]
            cancelled = await client.result("tasks/cancel", {"taskId": task_id})
            assert cancelled["status"] == "cancelled"
    check_frames(record)


async def test_modern_tasks_extension_and_inline_result(served: Served) -> None:
    record = Recording()
    with trio.fail_after(30):
        async with mcp_client(served.url, record, initialize=False) as client:
            discovered = await client.result("server/discover", {"_meta": MODERN})
            assert discovered["resultType"] == "complete"
            assert TASKS_EXTENSION in discovered["capabilities"]["extensions"]
            created = await client.result(
                "tools/call",
                {"name": "execute", "arguments": {"argv": ["echo", "hi"]}, "_meta": MODERN_TASKS},
            )
            assert created["resultType"] == "task"
            assert created["status"] == "working"
            for _ in range(200):
                got = await client.result(
                    "tasks/get", {"taskId": created["taskId"], "_meta": MODERN}
                )
                if got["status"] != "working":
                    break
                await trio.sleep(0.05)
            assert got["status"] == "completed"
            assert got["result"]["structuredContent"]["stdout"] == "hi\n"
            wrong = await client.request(
                "tools/list", {"_meta": {**MODERN, PROTOCOL_VERSION_KEY: "2099-01-01"}}
            )
            assert wrong["error"]["code"] == -32022
            assert "2026-07-28" in wrong["error"]["data"]["supported"]
            unknown = await client.request("resources/list", {"_meta": MODERN})
            assert unknown["error"]["code"] == -32601
    check_frames(record)


async def test_heartbeats_keep_a_quiet_call_alive_and_stop_before_the_response(
    nursery: trio.Nursery,
) -> None:
    config = make_config()
    config = attrs.evolve(config, mcp=McpConfig(heartbeat_interval=0.2, progress_interval=0.05))
    served = await start_daemon(nursery, config)
    record = Recording()
    with trio.fail_after(30):
        async with mcp_client(served.url, record) as client:
            response = await client.request(
                "tools/call",
                {
                    "name": "execute",
                    "arguments": {"argv": ["sleep", "1"]},
                    "_meta": {"progressToken": "hb"},
                },
            )
            assert response["result"]["isError"] is False
            # Nothing about the call may follow its response.
            with trio.move_on_after(0.5):
                await client.receive()
    progress = [m for m in client.notifications if m["method"] == "notifications/progress"]
    assert len(progress) >= 3  # the start, then heartbeats while `sleep` is silent
    counts = check_frames(record)
    assert counts["progress"] == len(progress)


async def test_a_client_offering_no_subprotocol_gets_the_cc_executor_protocol(
    served: Served,
) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(served.url) as ws:
            assert ws.subprotocol is None
            greeting = orjson.loads(await ws.get_message())
            assert greeting["method"] == "connected"


async def test_daemon_shutdown_ends_mcp_runs_through_the_ladder_and_closes_1001(
    nursery: trio.Nursery,
) -> None:
    served = await start_daemon(nursery, make_config(shutdown_grace=0.0))
    record = Recording()

    async def receive_until_closed(client: McpClient) -> int | None:
        try:
            while True:
                await client.receive()
        except ConnectionClosed as exc:
            return exc.reason.code if exc.reason is not None else None

    with trio.fail_after(30):
        async with mcp_client(served.url, record) as client:
            started = await client.result(
                "tools/call",
                {"name": "execute", "arguments": {"argv": ["sleep", "300"], "wait": False}},
            )
            pid = started["structuredContent"]["pid"]
            assert alive(pid)
            async with trio.open_nursery() as shutting:
                shutting.start_soon(served.daemon.shutdown)
                assert await receive_until_closed(client) == 1001
    # The run was ended through the ladder (SIGTERM is enough for sleep), not left behind.
    assert not alive(pid)
    assert dict(served.daemon.metrics.runs_completed) == {"cancelled": 1}
    check_frames(record)


async def test_another_connections_run_is_listed_and_controlled_and_its_output_says_why_not(
    served: Served,
) -> None:
    """A run that is not durable, started over JSON-RPC: an MCP client of the same identity sees
    it in `list` and `status` and can control it; `read_output` says why it cannot read it."""
    record = Recording()
    with trio.fail_after(30):
        async with open_client(served.url) as other, mcp_client(served.url, record) as client:
            run = await other.execute(argv=["sleep", "30"])

            async def tool(name: str, arguments: dict[str, object]) -> dict[str, Any]:
                called: dict[str, Any] = await client.result(
                    "tools/call", {"name": name, "arguments": arguments}
                )
                return called

            listed = await tool("list", {})
            assert run in [r["run"] for r in listed["structuredContent"]["runs"]]
            assert (await tool("status", {"run": run}))["isError"] is False
            refused = await tool("read_output", {"run": run})
            assert refused["isError"] is True
            error = refused["structuredContent"]["error"]
            assert error["code"] == -32602
            assert "started by another connection" in error["message"]
            cancelled = await tool("control", {"run": run, "action": "cancel"})
            assert cancelled["structuredContent"]["status"] == "cancelled"
            assert (await other.wait_completed(run)).completed is not None
    check_frames(record)


CANCELLED_AT_ONCE = [
    pytest.param({}, id="waiting"),
    pytest.param({"arguments": {"argv": ["sleep", "300"], "wait": False}}, id="wait-false"),
    pytest.param({"task": {"ttl": 60000}}, id="task"),
]


@pytest.mark.parametrize("shape", CANCELLED_AT_ONCE)
async def test_a_cancel_that_overtakes_its_call_ends_the_run_and_gets_no_answer(
    served: Served, shape: dict[str, Any]
) -> None:
    """notifications/cancelled sent right behind its tools/call reaches the daemon while the
    call is still starting its run: the run ends through the ladder and the call is not
    answered (the cancel was dropped: the run went on and the call was answered at its end)."""
    record = Recording()
    call = {"name": "execute", "arguments": {"argv": ["sleep", "300"]}, **shape}
    with trio.fail_after(30):
        async with mcp_client(served.url, record) as client:
            await client.send({"id": "doomed", "method": "tools/call", "params": call})
            await client.send(
                {"method": "notifications/cancelled", "params": {"requestId": "doomed"}}
            )
            while served.daemon.metrics.runs_completed["cancelled"] < 1:
                assert await client.result("ping") == {}
                await trio.sleep(0.05)
            assert await client.result("ping") == {}
            assert "doomed" not in client.responses
            listed = await client.result("tools/call", {"name": "list", "arguments": {}})
            runs = listed["structuredContent"]["runs"]
            assert [r["state"] for r in runs] == ["completed"]
    assert dict(served.daemon.metrics.runs_completed) == {"cancelled": 1}
    check_frames(record)


async def test_a_cancel_naming_true_is_no_cancel_of_request_1(served: Served) -> None:
    """`true` is not an id (a bool is no integer in JSON-RPC): it cancelled request 1, which
    then got no answer at all."""
    record = Recording()
    with trio.fail_after(30):
        async with mcp_client(served.url, record) as client:
            del client.responses[1]  # initialize's: id 1 is free again
            await client.send(
                {
                    "id": 1,
                    "method": "tools/call",
                    "params": {
                        "name": "execute",
                        "arguments": {"argv": ["sleep", "0.5"]},
                        "_meta": {"progressToken": "p"},
                    },
                }
            )
            while not client.notifications:  # the first progress: the call waits for its run
                await client.receive()
            await client.send({"method": "notifications/cancelled", "params": {"requestId": True}})
            while 1 not in client.responses:
                await client.receive()
            assert client.responses[1]["result"]["isError"] is False
    check_frames(record)


async def test_a_cancelled_tasks_result_stops_waiting_and_the_task_goes_on(served: Served) -> None:
    """tasks/result only waits: cancelled, it is done with at once (its id is free again, no
    answer comes) and the task is untouched; it used to wait on for the task's whole life."""
    record = Recording()
    call = {"name": "execute", "arguments": {"argv": ["sleep", "300"]}, "task": {"ttl": 60000}}
    with trio.fail_after(30):
        async with mcp_client(served.url, record) as client:
            task_id = (await client.result("tools/call", call))["task"]["taskId"]
            waiting = {"id": "w", "method": "tasks/result", "params": {"taskId": task_id}}
            await client.send(waiting)
            await client.send({"method": "notifications/cancelled", "params": {"requestId": "w"}})
            assert await client.result("ping") == {}
            await client.send({"id": "w", "method": "ping", "params": {}})  # the id is free
            while "w" not in client.responses:
                await client.receive()
            assert client.responses["w"] == {"jsonrpc": "2.0", "id": "w", "result": {}}
            got = await client.result("tasks/get", {"taskId": task_id})
            assert got["status"] == "working"
            cancelled = await client.result("tasks/cancel", {"taskId": task_id})
            assert cancelled["status"] == "cancelled"
    check_frames(record)


async def test_tasks_list_pages_with_a_cursor_and_refuses_one_it_did_not_give(
    served: Served,
) -> None:
    record = Recording()
    call = {"name": "execute", "arguments": {"argv": ["true"]}, "task": {"ttl": 60000}}
    with trio.fail_after(30):
        async with mcp_client(served.url, record) as client:
            ids = [(await client.result("tools/call", call))["task"]["taskId"] for _ in range(2)]
            listed = await client.result("tasks/list")
            assert [t["taskId"] for t in listed["tasks"]] == ids
            assert "nextCursor" not in listed
            rest = await client.result("tasks/list", {"cursor": "1"})
            assert [t["taskId"] for t in rest["tasks"]] == ids[1:]
            refused = await client.request("tasks/list", {"cursor": "not-ours"})
            assert refused["error"]["code"] == -32602
    check_frames(record)
