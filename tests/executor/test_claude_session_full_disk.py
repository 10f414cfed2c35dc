"""A durable Claude session on a real full disk (a 2 MiB tmpfs as the state directory).

``--journal-error-policy block`` (the default): the turn waits for the disk (the pump holds
the CLI through its pipe), and once space returns it ends and a new turn runs in the same
session, nothing of it lost.  ``cancel``: the session ends with a reason naming the error;
the client is told the dropped span (a gap), and — observed on main — a turn that ended in that
span lost its ``claude.turn_ended`` with the output around it (the journal dropped the whole
batch); now every turn the session ended is reported to the client.  After space returns the
Claude session resumes in a new run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from ccx_testing import run_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, daemon_env, notices, wait_notice
from durable_testing import DurableClient, open_durable_client
from faults_journal_testing import fill, small_tmpfs, wait_notification

from cc_executor.supervision.testing import marked_processes

LONG = "[chunks:2000]"  # a reply of ~18 KB: more than any slack left on the disk


async def first_turn(client: DurableClient, world: ClaudeWorld) -> str:
    run = (
        await client.call("claude", session=True, durable=True, prompt="hello", cwd=str(world.work))
    )["run"]
    await wait_notice(client, run, "claude.turn_ended", turn=1)
    return str(run)


async def test_block_policy_holds_the_turn_until_space_returns_then_the_session_goes_on(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(BOUND * 2):
        state = str(disk / "state")
        async with (
            run_daemon("--state-dir", state, env=daemon_env(world)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = await first_turn(client, world)
            filler = fill(disk)
            await client.call("claude.send", run=run, content=f"a long one {LONG}")
            fault = await wait_notification(client, "process.journal_error", run)
            assert "No space left on device" in fault["reason"]
            status = await client.call("status", run=run)
            assert status["state"] == "running"  # waiting for the disk, not ended
            filler.unlink()
            ended = await wait_notice(client, run, "claude.turn_ended", turn=2)
            await client.call("claude.send", run=run, content="and another")
            third = await wait_notice(client, run, "claude.turn_ended", turn=3)
            closed = await client.call("claude.close", run=run)
            record = await client.wait_completed(run)
            assert daemon.process.returncode is None
    assert "chunk 1999" in ended["result"]["result"]
    assert third["result"]["subtype"] == "success"
    assert closed["status"] == "completed"
    assert not client.gaps  # nothing was dropped: the pump waited
    assert record.completed is not None
    assert bytes(record.stdout).count(b'"type":"result"') == 3
    assert_nothing_left(run)


async def test_cancel_policy_ends_the_session_and_reports_every_turn_it_ended(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(BOUND * 2):
        state = str(disk / "state")
        args = ("--state-dir", state, "--journal-error-policy", "cancel")
        async with (
            run_daemon(*args, env=daemon_env(world)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = await first_turn(client, world)
            session_id = (await client.call("status", run=run))["claude"]["session_id"]
            filler = fill(disk)
            await client.call("claude.send", run=run, content=f"a long one {LONG}")
            await wait_notification(client, "process.journal_error", run)
            record = await client.wait_completed(run)
            await wait_until(lambda: not marked_processes(run), bound=BOUND)
            status: dict[str, Any] = await client.call("status", run=run)
            late = await client.call_error("claude.send", run=run, content="too late")
            filler.unlink()
            # Space is back: the Claude session goes on in a new run.
            resumed = (
                await client.call(
                    "claude.resume", session=session_id, prompt="again", cwd=str(world.work)
                )
            )["run"]
            again = await wait_notice(client, resumed, "claude.turn_ended")
            await client.call("claude.close", run=resumed)
            await client.wait_completed(resumed)
            assert daemon.process.returncode is None
    assert record.completed is not None
    assert record.completed["outcome"] == "cancelled"
    assert "journal write failed" in record.completed["reason"]
    assert "No space left on device" in record.completed["reason"]
    assert late.code == -32005
    assert late.message == f"run {run} has completed"  # not "before the daemon restarted"
    gaps = [gap for gap in client.gaps if gap["run"] == run]
    assert gaps
    assert all(gap["reason"].startswith("not recorded") for gap in gaps)
    # Every turn the session ended (its own count, in memory) reached the client.
    ended = [n["turn"] for n in notices(client, run, "claude.turn_ended")]
    assert ended == list(range(1, status["claude"]["turns"] + 1))
    assert status["claude"]["turns"] == 2, status["claude"]  # the long turn ended too
    assert again["result"]["subtype"] == "success"
    assert_nothing_left(run)
    assert_nothing_left(resumed)
