"""A durable Claude session outlives its client: its turn boundaries and permission requests
are part of the run's sequenced, journaled stream, replayed exactly once from any seq to a
connection that attaches, then live (real CLI, fake API)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import trio
from ccx_testing import (
    RunRecord,
    WireClient,
    open_client,
    run_daemon,
    start_daemon,
    wait_until,
)
from claude_world import (
    BOUND,
    ClaudeWorld,
    assert_nothing_left,
    daemon_env,
    reap_zombies,
    start,
    typed,
    wait_notice,
)

from cc_executor.supervision.testing import marked_processes


async def attach(client: WireClient, run: str, from_seq: int) -> dict[str, Any]:
    """Attach; the client's seq checks restart at `from_seq`."""
    client.runs[run] = RunRecord(run, last_seq=from_seq)
    result: dict[str, Any] = await client.call("attach", run=run, from_seq=from_seq)
    return result


def stream(events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["seq"], e["method"]) for e in events]


async def test_a_new_client_attaches_answers_the_pending_request_and_the_turn_completes(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    target = world.work / "made"
    with trio.fail_after(BOUND):
        async with open_client(served.url) as first:
            run = await start(
                first, session=True, durable=True, prompt=f"[tool:touch {target}]",
                cwd=str(world.work),
            )  # fmt: skip
            asked = await wait_notice(first, run, "claude.permission_request")
            await wait_notice(first, run, "claude.state", state="requires_action")
            before = list(first.runs[run].events)
            last_seq = first.runs[run].last_seq
        # The only client is gone; the session waits for its answer.
        assert marked_processes(run)
        async with open_client(served.url) as second:
            attached = await attach(second, run, last_seq)
            assert attached["from_seq"] == last_seq
            claude = attached["claude"]
            assert claude["state"] == "requires_action"
            assert [p["request"] for p in claude["pending"]] == [asked["request"]]
            assert claude["pending"][0]["input"] == asked["input"]
            await second.call(
                "claude.permission", run=run, request=asked["request"], behavior="allow"
            )
            ended = await wait_notice(second, run, "claude.turn_ended")
            await second.call("claude.close", run=run)
            await second.wait_completed(run)
            after = list(second.runs[run].events)
        # A third client replays the whole run from seq 0 after it ended.
        async with open_client(served.url) as third:
            await attach(third, run, 0)
            await third.wait_completed(run)
            whole = list(third.runs[run].events)
        async with open_client(served.url) as fourth:
            middle = asked_seq = next(
                e["seq"] for e in whole if e["method"] == "claude.permission_request"
            )
            await attach(fourth, run, middle - 1)
            await fourth.wait_completed(run)
            tail = list(fourth.runs[run].events)
    assert target.exists()
    assert ended["result"]["subtype"] == "success"
    joined = before + after
    # Nothing duplicated, nothing missing: 1..N exactly once, the same events as a replay.
    assert [seq for seq, _ in stream(joined)] == list(range(1, len(joined) + 1))
    assert stream(joined) == stream(whole)
    assert joined == whole
    assert tail == whole[asked_seq - 1 :]
    assert tail[0]["method"] == "claude.permission_request"
    methods = [e["method"] for e in whole]
    for method in ("claude.permission_request", "claude.permission_decided"):
        assert methods.count(method) == 1
    assert methods.count("claude.turn_started") == methods.count("claude.turn_ended") == 1
    assert methods[-1] == "process.completed"
    decided = next(e for e in whole if e["method"] == "claude.permission_decided")
    assert decided["by"].startswith("client:local/")
    await wait_until(lambda: not marked_processes(run))
    assert_nothing_left(run)


async def test_after_a_daemon_sigkill_the_run_is_lost_and_claude_resume_continues_it(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    env = daemon_env(world)
    with trio.fail_after(BOUND * 2):
        async with (
            run_daemon("--state-dir", state, env=env) as daemon,
            open_client(daemon.url) as client,
        ):
            run = await start(
                client, session=True, durable=True, prompt="remember the word PELICAN",
                cwd=str(world.work),
            )  # fmt: skip
            await wait_notice(client, run, "claude.turn_ended", turn=1)
            session_id = (await client.call("status", run=run))["claude"]["session_id"]
            await client.call("claude.send", run=run, content="a slow one [slow:300]")
            await wait_notice(client, run, "claude.turn_started", turn=2)
            await wait_until(lambda: len(world.api.requests) >= 2)
            assert marked_processes(run)
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
        async with run_daemon("--state-dir", state, env=env) as daemon:
            await wait_until(lambda: not marked_processes(run), bound=15)
            async with open_client(daemon.url) as client:
                lost = await client.call("status", run=run)
                assert lost["outcome"] == "lost"
                # Its journal still says which Claude session it was, and how far it got.
                assert lost["claude"]["session"] is True
                assert lost["claude"]["recovered"] is True
                assert lost["claude"]["session_id"] == session_id
                assert lost["claude"]["turns"] == 1
                # A replay of the lost run parses its stream-json again, notes and all.
                await attach(client, run, 0)
                await client.wait_completed(run)
                replayed = client.runs[run].events
                assert [e["turn"] for e in replayed if e["method"] == "claude.turn_started"] == [
                    1,
                    2,
                ]
                assert [e for e in typed(client, run) if e["type"] == "init"]
                seen = len(world.api.requests)
                reply = await client.call(
                    "claude.resume",
                    session=lost["claude"]["session_id"],
                    prompt="which word?",
                    cwd=str(world.work),
                )
                assert reply["session"] is True
                resumed = reply["run"]
                ended = await wait_notice(client, resumed, "claude.turn_ended")
                # One run per Claude session: a second resume while this one lives is refused.
                busy = await client.call_error(
                    "claude.resume", session=session_id, cwd=str(world.work)
                )
                status = await client.call("status", run=resumed)
                await client.call("claude.close", run=resumed)
    assert ended["result"]["subtype"] == "success"
    assert busy.code == -32005
    assert status["claude"]["session_id"] == session_id
    argv = status["argv"]
    assert f"--resume={session_id}" in argv
    # The new process sent the earlier conversation with the new message.
    request = world.api.requests[seen]["body"]
    texts = [
        block.get("text", "") if isinstance(block, dict) else str(block)
        for message in request["messages"]
        if message["role"] == "user"
        for block in (
            message["content"] if isinstance(message["content"], list) else [message["content"]]
        )
    ]
    assert any("remember the word PELICAN" in text for text in texts)
    assert any("which word?" in text for text in texts)
    assert not marked_processes(resumed)
    # The killed daemon's CLI was an orphan; if this test process is a child subreaper (an
    # in-process daemon of an earlier test makes it one) it is ours to reap.
    reap_zombies()
