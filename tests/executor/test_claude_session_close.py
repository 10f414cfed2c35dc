"""`claude.close` ends a session only after what it was given: the real CLI, the fake API.

Its EOF used to close the pipe at once, failing every line still queued for it: a start's
prompt (refused outright when the close came before `initialize` was answered) and a message
or answer the daemon had acknowledged but the CLI had not read yet were lost, and the session
ended with no turn for them."""

from __future__ import annotations

import orjson
import trio
from ccx_testing import open_client, start_daemon
from claude_fake_api import PLAIN_TEXT
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, notices, start, wait_notice

# More than a pipe holds (64 KiB), so the line is still being written while the CLI is stopped.
BIG = "hello " + "x" * 200_000


async def test_a_close_right_after_the_start_runs_the_prompt_first(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            # The close arrives while the CLI is still starting (initialize not answered).
            run = await start(client, session=True, prompt="hello", cwd=str(world.work))
            closed = await client.call("claude.close", run=run)
    ended = notices(client, run, "claude.turn_ended")
    assert [e["turn"] for e in ended] == [1]
    assert ended[0]["result"]["result"] == PLAIN_TEXT
    assert closed["status"] == "completed"
    assert closed["claude"]["turns"] == 1
    assert_nothing_left(run)


async def test_a_message_still_in_the_pipe_reaches_the_cli_before_the_eof(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, cwd=str(world.work))
            await wait_notice(client, run, "claude.event", type="control_response")
            await client.call("control", type="PAUSE", run=run)  # the CLI reads nothing
            sent = await client.call("claude.send", run=run, content=BIG)
            assert sent == {"message": "m-1", "turn": 1, "disposition": "started"}
            # close resumes the CLI; its EOF must wait for the rest of the line.
            closed = await client.call("claude.close", run=run)
    ended = notices(client, run, "claude.turn_ended")
    assert [e["turn"] for e in ended] == [1]
    assert ended[0]["result"]["subtype"] == "success"
    assert closed["status"] == "completed"
    assert closed["claude"]["turns"] == 1
    last_user = [m for m in world.api.requests[-1]["body"]["messages"] if m["role"] == "user"][-1]
    assert BIG in str(last_user["content"])
    assert_nothing_left(run)


def rpc(msg_id: str, method: str, params: dict[str, str]) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}


async def test_a_permission_answered_in_the_batch_of_the_close_reaches_the_cli_first(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    # The answer goes to the CLI through the session's outbox; its writer took a line out
    # before stdin counted it as pending, so a close in that moment saw nothing queued and
    # sent EOF, and the acknowledged answer was dropped (the tool never ran).  The batch runs
    # both at once; trio's scheduling decides which goes first, so it is tried a few times.
    served = await start_daemon(nursery, world.config())
    for attempt in range(4):
        target = world.work / f"allowed-{attempt}"
        with trio.fail_after(BOUND):
            async with open_client(served.url) as client:
                prompt = f"[tool:touch {target}]"
                run = await start(client, session=True, prompt=prompt, cwd=str(world.work))
                asked = await wait_notice(client, run, "claude.permission_request")
                answer = {"run": run, "request": asked["request"], "behavior": "allow"}
                batch = [
                    rpc("allow", "claude.permission", answer),
                    rpc("close", "claude.close", {"run": run}),
                ]
                client.sent_ids.update({"allow", "close"})
                await client.send_raw(orjson.dumps(batch).decode())
                assert (await client.response("allow"))["result"] == {"decided": True}
                closed = (await client.response("close"))["result"]
        assert closed["status"] == "completed"
        assert target.exists(), f"attempt {attempt}: the allowed tool never ran"
        assert_nothing_left(run)


async def test_a_request_pending_at_the_close_is_decided_before_its_turn_ends(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    # On stdin EOF the CLI gives up the request it waits on (no control_cancel_request), ends
    # the turn with a result and exits.  The broker withdrew the request only when the run
    # ended, so its `cancelled` decision came after the turn's `claude.turn_ended`.
    served = await start_daemon(nursery, world.config())
    target = world.work / "never"
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            prompt = f"[tool:touch {target}]"
            run = await start(client, session=True, prompt=prompt, cwd=str(world.work))
            asked = await wait_notice(client, run, "claude.permission_request")
            closed = await client.call("claude.close", run=run)
    decided = notices(client, run, "claude.permission_decided")
    ended = notices(client, run, "claude.turn_ended")
    assert [(d["request"], d["by"]) for d in decided] == [(asked["request"], "cancelled")]
    assert [e["turn"] for e in ended] == [1]
    assert decided[0]["seq"] < ended[0]["seq"]
    assert decided[0]["message"] == "the turn ended"
    # Nothing is pending once the turn is over: the last state is idle, told after the end.
    states = notices(client, run, "claude.state")
    assert states[-1]["state"] == "idle"
    assert [s["state"] for s in states if s["seq"] > ended[0]["seq"]] == ["idle"]
    assert closed["status"] == "completed"
    assert closed["claude"]["pending"] == []
    assert not target.exists()
    assert_nothing_left(run)
