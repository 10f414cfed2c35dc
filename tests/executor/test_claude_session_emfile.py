"""A daemon out of file descriptors, for real (``prlimit --nofile`` on the daemon process, its
soft limit set to the descriptors it holds), while clients start and drive Claude sessions.

Starting a session needs pipes: it is refused with a clear -32006, leaves no CLI process and
no claim on its Claude session id behind.  Mid-turn, with a durable session's permission
request pending: an attach that needs a journal cursor is told so explicitly
(``process.journal_error``), a PAUSE that cannot read /proc is a -32007 naming the process and
leaves the CLI running, and the turn, a new turn and the close need no new descriptor and
work.  Once descriptors are free, the same Claude session id starts a new session.

These held on main when written: the test keeps them (the fault suite lacked the session case).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import trio
from ccx_testing import run_daemon
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, daemon_env, wait_notice
from durable_testing import open_durable_client

from cc_executor.supervision.testing import marked_processes


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_limit(pid: int, limit: int) -> None:
    """The soft RLIMIT_NOFILE of a running process (raising the hard one needs a capability)."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:"], check=True)


async def test_sessions_at_the_descriptor_limit_fail_clearly_and_leave_nothing_behind(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    target = world.work / "made"
    fresh = str(uuid.uuid4())
    with trio.fail_after(BOUND * 2):
        async with (
            run_daemon("--state-dir", str(tmp_path / "state"), env=daemon_env(world)) as daemon,
            open_durable_client(daemon.url) as client,
            open_durable_client(daemon.url) as other,
        ):
            pid = daemon.process.pid
            run = (
                await client.call(
                    "claude", session=True, durable=True, prompt=f"[tool:touch {target}]",
                    cwd=str(world.work),
                )
            )["run"]  # fmt: skip
            asked = await wait_notice(client, run, "claude.permission_request")
            soft_limit(pid, open_fds(pid))
            refused: dict[str, Any] = await client.request(
                "claude", {"session": True, "session_id": fresh, "cwd": str(world.work)}
            )
            await other.attach(run, 0)
            unread = await wait_notice(other, run, "process.journal_error")
            paused = await client.call_error("control", type="PAUSE", run=run)
            await client.call(
                "claude.permission", run=run, request=asked["request"], behavior="allow"
            )
            await wait_notice(client, run, "claude.turn_ended", turn=1)
            await client.call("claude.send", run=run, content="next")
            await wait_notice(client, run, "claude.turn_ended", turn=2)
            closed = await client.call("claude.close", run=run)
            soft_limit(pid, 1024)
            again = await client.call(
                "claude", session=True, session_id=fresh, prompt="hello", cwd=str(world.work)
            )
            ended = await wait_notice(client, again["run"], "claude.turn_ended")
            await client.call("claude.close", run=again["run"])
            assert daemon.process.returncode is None
    assert refused["error"]["code"] == -32006
    assert "Too many open files" in refused["error"]["message"]
    assert "cannot read the journal" in unread["reason"]
    assert paused.code == -32007
    assert target.exists()
    assert closed["status"] == "completed"
    assert ended["result"]["subtype"] == "success"
    assert ended["result"]["session_id"] == fresh  # its claim was not left behind
    assert_nothing_left(run)
    assert not marked_processes(again["run"])
