"""Tasks the daemon starts for a connection in its own nursery each have an owner.

A failure in one is logged and counted and ends that task alone; the MCP journal follower,
the one such task that reads files, turns a journal it cannot read into a gap and still ends
whoever waits on the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from ccx_testing import Served, make_config, open_client, start_daemon, wait_until

from cc_executor.executor.mcp.runlog import RunLog, follow_journal
from cc_executor.supervision import Exited

BOUND = 30


@pytest.fixture
async def durable_served(nursery: trio.Nursery, tmp_path: Path) -> Served:
    return await start_daemon(nursery, make_config(state_dir=str(tmp_path / "state")))


async def test_a_failing_owned_task_ends_alone_and_is_counted(durable_served: Served) -> None:
    daemon = durable_served.daemon

    async def broken() -> None:
        raise RuntimeError("a bug in a background task")

    with trio.fail_after(BOUND):
        daemon.start_owned("test", broken)
        await wait_until(lambda: daemon.metrics.internal_errors["test"] > 0)
        async with open_client(durable_served.url) as client:  # the daemon still serves
            result = await client.call("execute", argv=["echo", "still here"])
            record = await client.wait_completed(result["run"])
    assert daemon.metrics.internal_errors["test"] == 1
    assert bytes(record.stdout) == b"still here\n"


async def test_an_unreadable_journal_is_a_gap_and_the_completion_still_comes(
    durable_served: Served,
) -> None:
    daemon = durable_served.daemon
    with trio.fail_after(BOUND):
        async with open_client(durable_served.url) as client:
            argv = ["sh", "-c", "echo one; read _; echo two"]
            started = await client.call("execute", argv=argv, durable=True, stdin="pipe")
            durable = daemon.durable.runs.get(started["run"])
            assert durable is not None
            # The real fault: the file is gone (an operator, a cleaner); EMFILE and EIO take
            # the same path (any OSError opening or reading it).
            os.unlink(durable.journal.path)
            run_log = RunLog(daemon.config.mcp)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow_journal, durable, run_log, None)
                await client.call("stdin", run=started["run"], data="\n", eof=True)
                await run_log.done.wait()
    assert run_log.gap is not None
    assert run_log.gap.reason.startswith("journal unreadable: ")
    assert run_log.completed is not None
    assert run_log.completed.outcome == Exited(0)
