"""Real faults against live Claude sessions (the real CLI, the fake API).

A client that vanishes — a real TCP reset (``SO_LINGER {1, 0}``, as a crashed peer or a
dropped NAT entry makes it) — while a permission request of its non-durable session is
pending: the disconnect cancels the run (docs/claude.md, "Ending a run"), so the CLI,
blocked on the request, must be ended, not left orphaned or waiting out the timeout; the
tool must not run, and the daemon keeps serving.

A real SIGSTOP PAUSE longer than ``permission_timeout`` with a request pending: the timeout
clock stops while paused, so the request is decided by the timeout only after the RESUME
(on main before the fix the timer decided it while the CLI was stopped), and the moved
deadline is posted to the client on RESUME (``claude.permission_deadline``: before, the client
kept the first ``expires_at``, a deadline that had passed while the request was still open).
"""

from __future__ import annotations

import trio
from ccx_testing import open_client, start_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, start, wait_notice
from faults_net_testing import reset

from cc_executor.supervision.testing import marked_processes


async def test_a_reset_mid_permission_request_ends_the_non_durable_session(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config(permission_timeout=3600))
    target = world.work / "never"
    with trio.fail_after(BOUND):
        try:
            async with open_client(served.url) as client:
                run = await start(
                    client, session=True, prompt=f"[tool:touch {target}]", cwd=str(world.work)
                )
                await wait_notice(client, run, "claude.permission_request")
                reset(client.ws._stream.socket)  # type: ignore[attr-defined]
        except Exception:  # the client's own end of the connection it reset
            pass
        await wait_until(lambda: not marked_processes(run), bound=BOUND)
        async with open_client(served.url) as other:
            still = await other.execute(argv=["echo", "still here"])
            record = await other.wait_completed(still)
    assert bytes(record.stdout) == b"still here\n"
    assert not target.exists()
    assert_nothing_left(run)


async def test_a_pause_longer_than_the_permission_timeout_does_not_time_the_request_out(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    """A real SIGSTOP PAUSE: the request is timed out only after the RESUME (docs/claude.md)."""
    served = await start_daemon(nursery, world.config(permission_timeout=1.0))
    target = world.work / "paused"
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(
                client, session=True, prompt=f"[tool:touch {target}]", cwd=str(world.work)
            )
            asked = await wait_notice(client, run, "claude.permission_request")
            await client.call("control", type="PAUSE", run=run)
            await wait_notice(client, run, "claude.state", state="paused")
            await trio.sleep(3)  # three timeouts' worth, stopped: the clock must not run
            await client.call("control", type="RESUME", run=run)
            moved = await wait_notice(client, run, "claude.permission_deadline")
            resumed = await wait_notice(
                client, run, "claude.state", state="requires_action", count=2
            )
            decided = await wait_notice(client, run, "claude.permission_decided")
            await wait_notice(client, run, "claude.turn_ended")
            await client.call("claude.close", run=run)
            await client.wait_completed(run)
    assert decided["by"] == "timeout"
    assert decided["seq"] > resumed["seq"]
    # The new deadline was posted on RESUME: later by at least the pause (3 s), before the
    # decision, and the one the pause moved (not a new request).
    assert moved["request"] == asked["request"]
    assert moved["expires_at"] >= asked["expires_at"] + 3 - 0.01
    assert moved["seq"] < decided["seq"]
    assert not target.exists()
    assert_nothing_left(run)
