"""`ccx claude`'s script subcommands through pipes, against a durable session of the real CLI
and the fake Messages API: send, status, approve (and approving again: exit 3), interrupt with
no turn running (exit 1), close."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import orjson
import trio
from ccx_testing import start_daemon
from claude_fake_api import PLAIN_TEXT
from claude_world import BOUND, ClaudeWorld, assert_nothing_left

from cc_executor.executor.client import (
    ClaudePermissionRequest,
    ClaudeSession,
    ClaudeStateChanged,
    ClaudeTurnEnded,
    attach_claude_session,
    open_connection,
    start_claude_session,
)

CCX = [sys.executable, "-m", "cc_executor.executor"]


async def ccx(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(BOUND):
        return await trio.run_process(
            [*CCX, *args], stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )


async def next_of(session: ClaudeSession, kind: type) -> object:
    async for event in session:
        if isinstance(event, kind):
            return event
    raise AssertionError(f"the session ended before a {kind.__name__}")


async def test_send_status_approve_interrupt_close(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    made = world.work / "by-script.txt"
    url = ("--url", served.url)
    with trio.fail_after(BOUND):
        async with open_connection(served.url) as conn:
            started = await start_claude_session(conn, cwd=str(world.work), durable=True)
            run = started.id
            await started.detach()
            session = await attach_claude_session(conn, run)

            done = await ccx("claude", "send", *url, run, f"please [tool:touch {made}]")
            assert done.returncode == 0, done.stderr
            assert done.stdout == b"message m-1 starts turn 1\n"
            request = await next_of(session, ClaudePermissionRequest)
            assert isinstance(request, ClaudePermissionRequest)

            done = await ccx("claude", "status", *url, run)
            assert done.returncode == 0, done.stderr
            out = done.stdout.decode()
            assert out.startswith(f"session {run}: requires_action, turn 1"), out
            assert f"  pending {request.request}: Bash touch {made}" in out

            done = await ccx("claude", "approve", *url, run, request.request)
            assert done.returncode == 0, done.stderr
            assert done.stdout == f"request {request.request} allowed\n".encode()
            done = await ccx(
                "claude", "approve", *url, run, request.request, "--deny", "--message", "no"
            )
            assert done.returncode == 3
            expected = f"request {request.request} was allowed already, by client:local/"
            assert expected in done.stderr.decode(), done.stderr
            ended = await next_of(session, ClaudeTurnEnded)
            assert isinstance(ended, ClaudeTurnEnded)
            assert made.exists()

            done = await ccx("claude", "interrupt", *url, run)
            assert done.returncode == 1  # no turn is running
            assert b"no turn is running" in done.stderr

            done = await ccx("claude", "send", *url, "--json", run, "-", stdin=b"from stdin")
            assert done.returncode == 0, done.stderr
            assert orjson.loads(done.stdout) == {
                "message": "m-2",
                "turn": 2,
                "disposition": "started",
            }
            await next_of(session, ClaudeTurnEnded)

            done = await ccx("claude", "close", *url, run)
            assert done.returncode == 0, done.stderr
            assert done.stdout == f"session {run} closed: exited\n".encode()
            done = await ccx("claude", "send", *url, run, "too late")
            assert done.returncode == 1
    assert_nothing_left(run)


async def test_ps_shows_a_sessions_own_state(nursery: trio.Nursery, world: ClaudeWorld) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_connection(served.url) as conn:
            session = await start_claude_session(conn, "say hi", cwd=str(world.work))
            async for event in session:  # until the turn is over and the session waits
                if isinstance(event, ClaudeStateChanged) and event.state == "idle":
                    break
            done = await ccx("ps", "--url", served.url)
            assert done.returncode == 0, done.stderr
            row = next(line for line in done.stdout.decode().splitlines() if session.id in line)
            assert row.split()[1] == "idle", row
            await session.close()


async def test_a_piped_ccx_claude_with_a_prompt_runs_every_message(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    # Its stdin ends at once: the close came before the CLI had answered initialize, and the
    # --prompt was dropped ("closed (0 turn(s))"); with a line piped after it, the prompt was
    # shown as someone else's message ("» hello") and the line "queued behind turn 0".
    served = await start_daemon(nursery, world.config())
    done = await ccx(
        "claude", "--url", served.url, "--cwd", str(world.work), "--prompt", "hello",
        stdin=b"say more\n",
    )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert done.stdout.decode().count(PLAIN_TEXT) == 2, done.stdout
    assert "» hello" not in err
    assert "queued behind turn 1 (message m-2)" in err or "queued" not in err, err
    assert "closed (2 turn(s)" in err, err
    alone = await ccx("claude", "--url", served.url, "--cwd", str(world.work), "--prompt", "hello")
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.decode().count(PLAIN_TEXT) == 1, alone.stdout
    assert "closed (1 turn(s)" in alone.stderr.decode(), alone.stderr


async def test_attaching_to_a_session_that_is_over_shows_its_past_and_how_it_ended(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    # Its stdin at an end at once (a pipe, a script): ccx said "left session ...; it goes on
    # (ccx claude attach ... rejoins it)" and exited 0, of a session whose CLI was dead.
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_connection(served.url) as conn:
            session = await start_claude_session(conn, "hello", cwd=str(world.work), durable=True)
            await next_of(session, ClaudeTurnEnded)
            pid = (await session.status()).pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # the CLI dies
            async for _ in session:
                pass  # to its completion
    done = await ccx("claude", "attach", "--url", served.url, session.id)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err.startswith(f"ccx: Claude session {session.id} is over; what happened in it:\n")
    assert "goes on" not in err, err
    assert f"ccx: session {session.id} ended: signalled (1 turn(s)" in err, err
    assert done.stdout.decode().count(PLAIN_TEXT) == 1, done.stdout
    assert_nothing_left(session.id)
