"""No process of a Claude session outlives it — the CLI, the Bash tool's shell (in a session
of its own) and a process that tool put in yet another session — however the session ends:
claude.close, CANCEL, the disconnect of its (non-durable) client, the daemon's shutdown."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
from ccx_testing import alive, open_client, run_daemon, start_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, read_pid, start, wait_notice

from cc_executor.supervision.testing import marked_processes


def tool_command(pids: Path) -> str:
    """A Bash tool call that leaves a sleep in a session of its own, and waits."""
    return (
        f"setsid sleep 300 & echo $! > {pids}.escaped; sleep 300 & echo $! > {pids}.sleep; "
        f"echo $$ > {pids}.bash; wait"
    )


def written(pids: Path) -> bool:
    files = [Path(f"{pids}.{name}") for name in ("escaped", "sleep", "bash")]
    return all(f.exists() and f.read_text().strip() for f in files)


def tool_pids(pids: Path) -> list[int]:
    return [read_pid(Path(f"{pids}.{name}")) for name in ("escaped", "sleep", "bash")]


@pytest.mark.parametrize("how", ["close", "cancel", "disconnect"])
async def test_nothing_outlives_a_session_with_a_running_tool(
    nursery: trio.Nursery, world: ClaudeWorld, how: str
) -> None:
    served = await start_daemon(nursery, world.config(close_grace=1.0))
    pids = world.work / "pids"
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(
                client, session=True, prompt=f"[tool:{tool_command(pids)}]",
                allowed_tools=["Bash"], cwd=str(world.work),
            )  # fmt: skip
            await wait_notice(client, run, "claude.turn_started")
            await wait_until(lambda: written(pids), bound=30)
            started = tool_pids(pids)
            assert all(alive(pid) for pid in started)
            if how == "close":
                closed = await client.call("claude.close", run=run)
                assert closed["outcome"] in ("exited", "cancelled")
            elif how == "cancel":
                reply = await client.call("control", type="CANCEL", run=run)
                assert reply["status"] == "canceled"
        # "disconnect": the client's connection ends here with the session still running.
        await wait_until(lambda: not marked_processes(run), bound=30)
    assert not any(alive(pid) for pid in started)
    assert_nothing_left(run)


async def test_nothing_outlives_a_session_when_the_daemon_shuts_down(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    config = world.config().claude
    env = {
        "CCX_CLAUDE_BINARY": config.binary,
        "CCX_CLAUDE_BASE_URL": str(config.base_url),
        "CCX_CLAUDE_API_KEY_ENV": str(config.api_key_env),
        "CCX_CLAUDE_ENV": ",".join(f"{k}={v}" for k, v in config.env.items()),
    }
    pids = world.work / "pids"
    with trio.fail_after(BOUND):
        async with (
            run_daemon("--state-dir", str(tmp_path / "state"), env=env) as daemon,
            open_client(daemon.url) as client,
        ):
            run = await start(
                client, session=True, durable=True, prompt=f"[tool:{tool_command(pids)}]",
                allowed_tools=["Bash"], cwd=str(world.work),
            )  # fmt: skip
            await wait_until(lambda: written(pids), bound=30)
            started = tool_pids(pids)
            daemon.process.send_signal(signal.SIGTERM)
            record = await client.wait_completed(run)
            await daemon.process.wait()
    assert record.completed is not None
    assert record.completed["reason"] == "daemon shutdown"
    assert not any(alive(pid) for pid in started)
    assert_nothing_left(run)
