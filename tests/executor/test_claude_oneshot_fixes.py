"""One-shot Claude runs, three defects issue 15 names: the completion keeps the result's
permission_denials; a CANCEL after the result is answered at once with the rung the
completion reports; a busy Claude session's queue is first come, first served across
connections (real CLI, fake API)."""

from __future__ import annotations

import uuid

import orjson
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
from faults_net_testing import connect, read_until, reset, upgrade_head

from bench.rawws import client_frame


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


async def test_a_queued_start_whose_client_resets_leaves_the_line_and_spawns_nothing(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    # Found in review: the queued start waited for its turn in the session's nursery, which
    # nothing cancelled when the client went, so the ended session stayed open (its place in
    # max_connections taken) for as long as the holder ran, and then spawned a CLI only to end
    # it.  The client here resets its TCP connection (SO_LINGER 0) while it waits in line.
    served = await start_daemon(nursery, world.config(busy_session="queue"))
    claims = served.daemon.claims
    session_id = str(uuid.uuid4())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as holder:
            first = await start(
                holder, prompt="[stall]", session_id=session_id, cwd=str(world.work)
            )
            await wait_typed(holder, first, "init")
            sock = await connect(served.port)
            await sock.send(upgrade_head(served.port))
            await read_until(sock, b'"connected"')
            request = {
                "jsonrpc": "2.0", "id": 1, "method": "claude",
                "params": {"prompt": "again", "resume": session_id, "cwd": str(world.work)},
            }  # fmt: skip
            await sock.send(client_frame(0x1, orjson.dumps(request)))
            reply = await read_until(sock, b'"queued"')
            queued = orjson.loads(reply[reply.index(b'{"jsonrpc"') :])["result"]["run"]
            assert claims.waiting(session_id) == 1
            reset(sock)
            await wait_until(lambda: len(served.daemon.sessions) == 1)  # the holder's alone
            assert claims.waiting(session_id) == 0
            await holder.call("control", type="CANCEL", run=first)
            await finish(holder, first)
    assert claims.holder(session_id) is None  # passed to nobody
    assert served.daemon.runs.get(queued) is None  # never spawned
    assert_nothing_left(first)
