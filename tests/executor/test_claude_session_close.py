"""`claude.close` ends a session only after what it was given: the real CLI, the fake API.

Its EOF used to close the pipe at once, failing every line still queued for it: a start's
prompt (refused outright when the close came before `initialize` was answered) and a message
or answer the daemon had acknowledged but the CLI had not read yet were lost, and the session
ended with no turn for them."""

from __future__ import annotations

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
