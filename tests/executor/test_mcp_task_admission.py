"""A new MCP task's admission: the table's bound and the ttl it gets."""

from __future__ import annotations

import pytest
import trio
from ccx_testing import make_config, start_daemon
from mcp_testing import Recording, check_frames, mcp_client

from cc_executor.executor.config.mcp import McpConfig
from cc_executor.executor.mcp.tasks import TaskTable
from cc_executor.protocol import LimitExceeded


def test_a_full_table_refuses_with_the_limit_named() -> None:
    config = McpConfig(max_tasks=0)
    with pytest.raises(LimitExceeded) as refused:
        TaskTable(config.max_tasks).admit(config, None)
    assert refused.value.data == {"limit": "mcp.max_tasks", "value": 0}


@pytest.mark.parametrize(
    ("asked", "given"),
    [(None, 60_000), (1_000, 1_000), (10**9, 60_000), (0, 60_000), (-5, 60_000), (True, 60_000)],
)
def test_a_task_gets_the_clients_ttl_only_when_shorter(asked: object, given: int) -> None:
    config = McpConfig(task_ttl_ms=60_000)
    assert TaskTable(4).admit(config, asked) == given


def test_a_place_being_taken_counts_until_its_task_is_created() -> None:
    config = McpConfig(max_tasks=1)
    table = TaskTable(config.max_tasks)
    with table.admitting(config, None), pytest.raises(LimitExceeded):
        table.admit(config, None)
    assert table.admit(config, None) == config.task_ttl_ms  # given back: nothing was created


async def test_task_calls_in_flight_at_once_take_no_more_than_max_tasks(
    nursery: trio.Nursery,
) -> None:
    """Each task's run is started between the bound's check and the task's creation: six
    calls sent together all passed a table with room for two."""
    served = await start_daemon(nursery, make_config(mcp=McpConfig(max_tasks=2)))
    record = Recording()
    call = {"name": "execute", "arguments": {"argv": ["sleep", "30"]}, "task": {"ttl": 60000}}
    with trio.fail_after(20):
        async with mcp_client(served.url, record) as client:
            for n in range(6):
                await client.send({"id": f"task-{n}", "method": "tools/call", "params": call})
            while len(client.responses) < 1 + 6:  # initialize's, and the six
                await client.receive()
            answers = [client.responses[f"task-{n}"] for n in range(6)]
            tasks = [a["result"]["task"] for a in answers if "task" in a["result"]]
            assert len(tasks) == 2
            refused = [a["result"] for a in answers if "task" not in a["result"]]
            assert {r["structuredContent"]["error"]["data"]["limit"] for r in refused} == {
                "mcp.max_tasks"
            }
            for task in tasks:
                await client.result("tasks/cancel", {"taskId": task["taskId"]})
    check_frames(record)
