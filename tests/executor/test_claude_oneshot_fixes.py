"""One-shot Claude runs, three defects issue 15 names: the completion keeps the result's
permission_denials; a CANCEL after the result is answered at once with the rung the
completion reports; a busy Claude session's queue is first come, first served across
connections (real CLI, fake API)."""

from __future__ import annotations

import uuid

import trio
from ccx_testing import alive, open_client, start_daemon, wait_until
from claude_world import (
    BOUND,
    ClaudeWorld,
    assert_nothing_left,
    finish,
    read_pid,
    start,
    wait_typed,
)


async def test_the_completion_keeps_the_permission_denials(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    target = world.work / "never"
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            # Bash is not allowed and -p has nobody to ask: the CLI denies the call.
            run = await start(client, prompt=f"[tool:touch {target}]", cwd=str(world.work))
            record = await finish(client, run)
    assert record.completed is not None
    denials = record.completed["claude"]["permission_denials"]
    assert [d["tool_name"] for d in denials] == ["Bash"]
    assert denials[0]["tool_input"]["command"] == f"touch {target}"
    assert not target.exists()
    assert_nothing_left(run)


async def test_a_cancel_after_the_result_is_answered_at_once_with_the_completions_rung(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    wrapper, pidfile = world.lingering_cli()
    # Long graces: a CANCEL that waited for either would outlast the bound below.
    served = await start_daemon(
        nursery, world.config(binary=str(wrapper), post_result_grace=300, interrupt_grace=300)
    )
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, prompt="say hi", cwd=str(world.work))
            await wait_typed(client, run, "result")
            await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
            with trio.fail_after(10):  # not the interrupt grace: SIGINT has nothing to save
                reply = await client.call("control", type="CANCEL", run=run)
            record = await finish(client, run)
    completed = record.completed
    assert completed is not None
    assert reply["status"] == "canceled"
    assert reply["rung"] == completed["rung"] == "sigterm"
    assert completed["status"] == "canceled"
    assert completed["reason"] == "cancelled by client"
    assert completed["claude"]["subtype"] == "success"
    assert completed["claude"]["lingered"] is False
    assert not alive(read_pid(pidfile))
    assert_nothing_left(run)


async def test_a_busy_session_queue_is_first_come_first_served_across_connections(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config(busy_session="queue"))
    session_id = str(uuid.uuid4())
    with trio.fail_after(BOUND):
        async with (
            open_client(served.url) as holder,
            open_client(served.url) as early,
            open_client(served.url) as late,
        ):
            first = await start(
                holder, prompt="[stall]", session_id=session_id, cwd=str(world.work)
            )
            await wait_typed(holder, first, "init")
            second = await early.call("claude", prompt="second", resume=session_id)
            third = await late.call("claude", prompt="again", resume=session_id)
            assert second["status"] == third["status"] == "queued"
            claims = served.daemon.claims
            assert claims.waiting(session_id) == 2
            await holder.call("control", type="CANCEL", run=first)
            # The session passes to the earlier waiter; the later one is still in line.
            await wait_until(lambda: claims.holder(session_id) == second["run"])
            assert claims.waiting(session_id) == 1
            await finish(early, second["run"])
            record = await finish(late, third["run"])
            started = [
                n["params"]["run"] for n in early.notifications + late.notifications
                if n["method"] == "process.started"
            ]  # fmt: skip
    assert record.completed is not None
    assert started == [second["run"], third["run"]]
    for run in (first, second["run"], third["run"]):
        assert_nothing_left(run)
