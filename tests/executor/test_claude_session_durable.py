"""A durable Claude session outlives its client: its turn boundaries and permission requests
are part of the run's sequenced, journaled stream, replayed exactly once from any seq to a
connection that attaches, then live (real CLI, fake API)."""

from __future__ import annotations

from typing import Any

import trio
from ccx_testing import RunRecord, WireClient, open_client, start_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, start, wait_notice

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
