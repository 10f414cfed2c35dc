"""Claude Code runs end to end: the real CLI, driven through the daemon over loopback, against
the tests' own fake Messages API (tests/claude_fake_api.py).  Every test checks /proc that
nothing of the run survives it, including the Bash tool's shell in its own session."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import trio
from ccx_testing import Served, alive, open_client, start_daemon, wait_until
from claude_fake_api import PLAIN_TEXT
from claude_world import (
    BOUND,
    ClaudeWorld,
    assert_nothing_left,
    finish,
    read_pid,
    start,
    typed,
    wait_typed,
)

from cc_executor.protocol import ErrorCode


async def test_plain_prompt_gives_typed_events_and_a_successful_result(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, prompt="say hi", cwd=str(world.work))
            record = await finish(client, run)
    events = typed(client, run)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "init"
    assert kinds[-1] == "result"
    assert any(e["type"] == "text" and e["text"] == PLAIN_TEXT for e in events)
    session_id = events[0]["session_id"]
    completed = record.completed
    assert completed is not None
    assert completed["status"] == "completed"
    assert completed["exit_code"] == 0
    claude = completed["claude"]
    assert claude["has_result"] is True
    assert claude["subtype"] == "success"
    assert claude["is_error"] is False
    assert claude["session_id"] == session_id
    assert claude["cost_usd"] > 0
    assert claude["usage"]["output_tokens"] > 0
    assert claude["num_turns"] == 1
    assert claude["lingered"] is False
    # The raw bytes stay available: process.output carries every stream-json line.
    lines = [line for line in bytes(record.stdout).split(b"\n") if line]
    assert lines[0].startswith(b'{"type":"system","subtype":"init"')
    assert lines[-1].startswith(b'{"type":"result"')
    # The daemon passed the key and base URL from its configuration, nothing else.
    headers_seen = world.api.requests
    assert headers_seen, "the CLI never reached the fake API"


async def test_bash_tool_round_trip(nursery: trio.Nursery, world: ClaudeWorld) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(
                client,
                prompt="run [tool:echo hello]",
                allowed_tools=["Bash"],
                cwd=str(world.work),
            )
            record = await finish(client, run)
    events = typed(client, run)
    use = next(e for e in events if e["type"] == "tool_use")
    result = next(e for e in events if e["type"] == "tool_result")
    assert use["name"] == "Bash"
    assert use["input"]["command"] == "echo hello"
    assert result["tool_use_id"] == use["id"]
    assert result["is_error"] is False
    assert "hello" in str(result["content"])
    assert any(e["type"] == "text" and e["text"] == "The tool said: hello" for e in events)
    assert record.completed is not None
    assert record.completed["status"] == "completed"
    assert record.completed["claude"]["num_turns"] == 2


async def test_cancel_during_a_long_bash_call_leaves_nothing_alive(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    pids = world.work / "pids"
    command = f"sleep 300 & echo $! > {pids}.sleep; echo $$ > {pids}.bash; wait"
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(
                client, prompt=f"[tool:{command}]", allowed_tools=["Bash"], cwd=str(world.work)
            )
            await wait_typed(client, run, "tool_use")
            await wait_until(
                lambda: (
                    Path(f"{pids}.sleep").exists()
                    and Path(f"{pids}.bash").exists()
                    and Path(f"{pids}.bash").read_text().strip() != ""
                ),
                bound=30,
            )
            tool_pids = [read_pid(Path(f"{pids}.{name}")) for name in ("bash", "sleep")]
            assert all(alive(pid) for pid in tool_pids)
            # The tool's shell is in a session of its own, outside the CLI's process group.
            live = served.daemon.registry.get(run)
            assert live is not None
            assert os.getsid(tool_pids[0]) not in (live.pgid, os.getsid(0))
            reply = await client.call("control", type="CANCEL", run=run)
            record = await finish(client, run)
    assert reply["status"] == "canceled"
    completed = record.completed
    assert completed is not None
    assert completed["status"] == "canceled"
    assert completed["outcome"] == "cancelled"
    # SIGINT first: the CLI wrote a proper result and ended its tool.
    assert reply["rung"] == "sigint"
    assert completed["claude"]["has_result"] is True
    assert completed["claude"]["is_error"] is True
    assert not any(alive(pid) for pid in tool_pids)
    assert_nothing_left(run)


@pytest.mark.parametrize("action", ["cancel", "interrupt", "report"])
async def test_watchdog_fires_when_the_api_stalls(
    nursery: trio.Nursery, world: ClaudeWorld, action: str
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(
                client,
                prompt="[stall]",
                cwd=str(world.work),
                # Longer than the CLI takes to reach the API, even on a loaded machine.
                idle_timeout=3.0,
                idle_action=action,
            )
            fired = await wait_typed(client, run, "watchdog")
            assert fired["action"] == action
            assert world.api.stalled.is_set()
            if action == "report":
                # Reported only: the run goes on until the client decides.
                assert served.daemon.registry.get(run) is not None
                await client.call("control", type="CANCEL", run=run)
            record = await finish(client, run)
    completed = record.completed
    assert completed is not None
    assert completed["claude"]["watchdog_fired"] >= 1
    if action == "cancel":
        assert completed["outcome"] == "cancelled"
        assert completed["reason"].startswith("watchdog")
        assert completed["status"] == "failed"
    elif action == "interrupt":
        # SIGINT mid-stream ends the CLI by itself, usually with an error result of its own
        # (not always: interrupted early in its request, it exits without one).
        assert completed["outcome"] == "exited"
        assert completed["status"] == "failed"
        if completed["claude"]["has_result"]:
            assert completed["claude"]["is_error"] is True
    else:
        assert completed["status"] == "canceled"
    assert_nothing_left(run)


@pytest.mark.parametrize("status", [429, 529, 500])
async def test_api_errors_end_in_an_error_result(
    nursery: trio.Nursery, world: ClaudeWorld, status: int
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, prompt=f"fail [error:{status}]", cwd=str(world.work))
            record = await finish(client, run)
    completed = record.completed
    assert completed is not None
    assert completed["status"] == "failed"
    claude = completed["claude"]
    assert claude["has_result"] is True
    assert claude["is_error"] is True
    assert str(status) in claude["text"]
    result = next(e for e in typed(client, run) if e["type"] == "result")
    assert result["is_error"] is True
    if status == 529:
        assert any(e["type"] == "api_retry" for e in typed(client, run))
    assert_nothing_left(run)


async def test_a_cli_that_hangs_after_its_result_completes_from_the_result(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    wrapper, pidfile = world.lingering_cli()
    served = await start_daemon(
        nursery, world.config(binary=str(wrapper), post_result_grace=0.5, interrupt_grace=0.5)
    )
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, prompt="say hi", cwd=str(world.work))
            record = await finish(client, run)
    completed = record.completed
    assert completed is not None
    assert completed["claude"]["lingered"] is True
    assert completed["claude"]["subtype"] == "success"
    assert completed["status"] == "completed"
    assert completed["outcome"] == "cancelled"
    assert completed["rung"] == "sigterm"  # the lingering child ignored SIGINT
    assert not alive(read_pid(pidfile))
    assert_nothing_left(run)


async def test_a_busy_claude_session_is_refused(nursery: trio.Nursery, world: ClaudeWorld) -> None:
    served = await start_daemon(nursery, world.config())
    session_id = str(uuid.uuid4())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            first = await start(
                client, prompt="[stall]", session_id=session_id, cwd=str(world.work)
            )
            error = await client.call_error("claude", prompt="again", resume=session_id)
            assert error.code == ErrorCode.INVALID_STATE
            assert error.data["claude_session"] == session_id
            assert error.data["run"] == first
            await client.call("control", type="CANCEL", run=first)
            await finish(client, first)
    assert_nothing_left(first)


async def test_a_busy_claude_session_queues_when_configured(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config(busy_session="queue"))
    session_id = str(uuid.uuid4())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            first = await start(
                client, prompt="[stall]", session_id=session_id, cwd=str(world.work)
            )
            await wait_typed(client, first, "init")
            queued = await client.call("claude", prompt="again", resume=session_id)
            assert queued["status"] == "queued"
            second = queued["run"]
            await client.call("control", type="CANCEL", run=first)
            await finish(client, first)
            record = await finish(client, second)
    started = [n["params"]["run"] for n in client.notifications if n["method"] == "process.started"]
    assert started == [first, second]
    assert record.completed is not None
    assert_nothing_left(second)


async def test_flag_and_environment_rules(nursery: trio.Nursery, world: ClaudeWorld) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await client.call_error(
                "claude", prompt="hi", dangerously_skip_permissions=True
            )
            assert error.code == ErrorCode.POLICY_REFUSED
            assert error.data["rule"] == "claude.sandboxed"
            error = await client.call_error(
                "claude", prompt="hi", extra_args=["--allow-dangerously-skip-permissions"]
            )
            assert error.code == ErrorCode.POLICY_REFUSED
            error = await client.call_error(
                "claude", prompt="hi", extra_args=["--permission-mode", "bypassPermissions"]
            )
            assert error.data["rule"] == "claude.sandboxed"
            error = await client.call_error("claude", prompt="hi", extra_args=["--print"])
            assert error.data["rule"] == "claude.allowed_flags"
            error = await client.call_error(
                "claude", prompt="hi", env={"ANTHROPIC_BASE_URL": "http://elsewhere"}
            )
            assert error.code == ErrorCode.INVALID_PARAMS
    assert not world.api.requests  # nothing was started


async def test_a_sandboxed_daemon_may_skip_permissions(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config(sandboxed=True))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            # As root the CLI accepts the flag only with IS_SANDBOX=1, which the daemon sets.
            run = await start(
                client,
                prompt="say hi",
                dangerously_skip_permissions=True,
                cwd=str(world.work),
            )
            record = await finish(client, run)
    assert record.completed is not None
    assert record.completed["status"] == "completed", record.stderr.decode(errors="replace")
    init = typed(client, run)[0]
    assert init["permission_mode"] == "bypassPermissions"


async def test_execute_cannot_bypass_the_sandbox_rule(served: Served) -> None:
    # The same flag rule holds when a client runs the CLI through plain `execute`.
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            for argv in (
                ["claude", "-p", "--dangerously-skip-permissions", "hi"],
                ["/usr/local/bin/claude", "--permission-mode", "bypassPermissions"],
                ["claude", "--permission-mode=bypassPermissions"],
            ):
                error = await client.call_error("execute", argv=argv)
                assert error.code == ErrorCode.POLICY_REFUSED, argv
                assert error.data["rule"] == "claude.sandboxed"
            error = await client.call_error("execute", argv=["true"], env={"IS_SANDBOX": "1"})
            assert error.data["rule"] == "claude.sandboxed"
            # Other programs may use the same words.
            run = await client.execute(argv=["echo", "--dangerously-skip-permissions"])
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == b"--dangerously-skip-permissions\n"
