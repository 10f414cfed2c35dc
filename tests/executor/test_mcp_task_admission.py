"""A new MCP task's admission: the table's bound and the ttl it gets."""

from __future__ import annotations

import pytest

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
