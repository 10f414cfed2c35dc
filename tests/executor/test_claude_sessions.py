"""Live Claude session runs end to end: the real CLI in its two-way stream-json mode, driven
through the daemon over loopback against the fake Messages API — turns, queued messages,
interrupt, model and mode changes, close; and nothing of the run survives it."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import trio
from ccx_testing import open_client, start_daemon, wait_until
from claude_fake_api import PLAIN_TEXT
from claude_world import (
    BOUND,
    ClaudeWorld,
    assert_nothing_left,
    notices,
    start,
    typed,
    wait_notice,
)

from cc_executor.protocol import ErrorCode


def states(client: object, run: str) -> list[str]:
    return [p["state"] for p in notices(client, run, "claude.state")]  # type: ignore[arg-type]


async def test_two_turns_in_one_process_the_second_sent_while_the_first_runs(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            reply = await client.call(
                "claude", session=True, prompt="first [slow:20]", cwd=str(world.work)
            )
            assert reply["status"] == "started"
            assert reply["session"] is True
            run = reply["run"]
            first = await wait_notice(client, run, "claude.turn_started")
            assert first["turn"] == 1
            assert first["messages"] == ["m-1"]
            sent = await client.call("claude.send", run=run, content="second", id="two")
            assert sent == {"message": "two", "turn": 1, "disposition": "queued"}
            ended = await wait_notice(client, run, "claude.turn_ended", count=2)
            status = await client.call("status", run=run)
            closed = await client.call("claude.close", run=run)
    started = notices(client, run, "claude.turn_started")
    taken = notices(client, run, "claude.message")
    # The CLI takes a message only at a tool boundary: without one, it starts the next turn.
    assert [s["turn"] for s in started] == [1, 2]
    assert started[1]["messages"] == ["two"] or taken == [{**taken[0], "message": "two"}]
    results = [e["result"] for e in notices(client, run, "claude.turn_ended")]
    assert ended["turn"] == 2
    assert [r["subtype"] for r in results] == ["success", "success"]
    assert results[0]["result"].startswith("chunk 0 chunk 1")
    assert results[1]["result"] == PLAIN_TEXT
    assert all(r["cost_usd"] > 0 for r in results)
    assert results[1]["total_cost_usd"] == sum(r["cost_usd"] for r in results)
    assert all(r["usage"]["output_tokens"] > 0 for r in results)
    assert results[0]["permission_denials"] == []
    # One process for both turns: one start, one init per turn from the same session.
    assert len([n for n in client.notifications if n["method"] == "process.started"]) == 1
    inits = [e for e in typed(client, run) if e["type"] == "init"]
    assert len(inits) == 2
    assert inits[0]["session_id"] == inits[1]["session_id"]
    claude = status["claude"]
    assert claude["session"] is True
    assert claude["session_id"] == inits[0]["session_id"]
    assert claude["turns"] == 2
    assert claude["turn"] == 2
    assert claude["state"] == "idle"
    assert claude["cost_usd"] == sum(r["cost_usd"] for r in results)
    assert claude["usage"]["output_tokens"] == sum(r["usage"]["output_tokens"] for r in results)
    assert claude["pending"] == []
    assert states(client, run)[0] == "running"
    assert states(client, run)[-1] == "idle"
    assert closed["status"] == "completed"
    assert closed["outcome"] == "exited"
    assert closed["exit_code"] == 0
    assert closed["claude"]["turns"] == 2
    record = client.runs[run]
    assert record.completed is not None
    assert record.completed["claude"]["turns"] == 2
    # The session notices are numbered with the output: contiguous (the client checks) and
    # each after the line that caused it.
    methods = [e["method"] for e in record.events]
    assert methods[-1] == "process.completed"
    assert methods.index("claude.turn_ended") > methods.index("process.output")
    assert_nothing_left(run)


async def test_session_refuses_raw_stdin_and_steering_of_other_runs(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, cwd=str(world.work))
            await wait_notice(client, run, "claude.event", type="control_response")
            error = await client.call_error("stdin", run=run, data="{}\n")
            assert error.code == ErrorCode.INVALID_PARAMS
            assert "claude.send" in error.message
            error = await client.call_error("claude.interrupt", run=run)
            assert error.code == ErrorCode.INVALID_PARAMS
            assert "no turn is running" in error.message
            other = await client.execute(argv=["sleep", "30"])
            error = await client.call_error("claude.send", run=other, content="hi")
            assert error.code == ErrorCode.INVALID_PARAMS
            assert "not a Claude session" in error.message
            error = await client.call_error("claude.send", run="nope", content="hi")
            assert error.code == ErrorCode.RUN_NOT_FOUND
            await client.call("control", type="CANCEL", run=other)
            closed = await client.call("claude.close", run=run)
            assert closed["status"] == "completed"
            error = await client.call_error("claude.send", run=run, content="late")
            assert error.code == ErrorCode.INVALID_STATE
    assert_nothing_left(run)


async def test_interrupt_ends_the_turn_and_the_session_goes_on(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(
                client,
                session=True,
                prompt="a long one [slow:100]",
                include_partial_messages=True,
                cwd=str(world.work),
            )
            # The stream is under way: the CLI has passed on a text delta.
            await wait_notice(client, run, "claude.event", type="partial")
            pid = (await client.call("status", run=run))["pid"]
            reply = await client.call("claude.interrupt", run=run)
            assert reply == {"interrupted": True, "turn": 1}
            ended = await wait_notice(client, run, "claude.turn_ended", turn=1)
            assert ended["interrupted"] is True
            assert ended["result"]["subtype"] == "error_during_execution"
            assert ended["result"]["terminal_reason"] == "aborted_streaming"
            await wait_notice(client, run, "claude.state", state="idle")
            model = await client.call("claude.set_model", run=run, model="claude-other")
            assert "response" in model
            mode = await client.call("claude.set_permission_mode", run=run, mode="acceptEdits")
            assert mode == {"response": {"mode": "acceptEdits"}}
            again = await client.call("claude.send", run=run, content="again")
            assert again["disposition"] == "started"
            assert again["turn"] == 2
            second = await wait_notice(client, run, "claude.turn_ended", turn=2)
            status = await client.call("status", run=run)
            await client.call("claude.close", run=run)
    assert second["interrupted"] is False
    assert second["result"]["subtype"] == "success"
    assert second["result"]["result"] == PLAIN_TEXT
    assert status["pid"] == pid  # the same process throughout
    assert status["claude"]["turns"] == 2
    # The next turn's request went out with the model set mid-session.
    assert world.api.requests[-1]["body"]["model"] == "claude-other"
    assert_nothing_left(run)


# A stand-in CLI that answers `initialize` and nothing else, logging what it reads: the
# daemon's other control requests then wait for an answer that never comes.
MUTE_CLI = """\
import json, sys
log = open(%r, "a")
for line in sys.stdin:
    log.write(line)
    log.flush()
    msg = json.loads(line)
    if msg.get("type") == "control_request" and msg["request"]["subtype"] == "initialize":
        answer = {"subtype": "success", "request_id": msg["request_id"], "response": {}}
        print(json.dumps({"type": "control_response", "response": answer}), flush=True)
"""


def mute_cli(tmp: Path) -> tuple[Path, Path]:
    log = tmp / "mute.log"
    script = tmp / "mute-claude"
    script.write_text(f"#!{sys.executable}\n" + MUTE_CLI % str(log))
    script.chmod(0o755)
    return script, log


async def test_a_control_request_pending_when_the_run_ends_is_answered_with_an_error(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    script, log = mute_cli(world.tmp)
    served = await start_daemon(nursery, world.config(binary=str(script)))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client, open_client(served.url) as other:
            run = await start(client, session=True, cwd=str(world.work))
            await wait_notice(client, run, "claude.event", type="control_response")
            errors = []

            async def set_model() -> None:
                errors.append(await client.call_error("claude.set_model", run=run, model="x"))

            async with trio.open_nursery() as waiting:
                waiting.start_soon(set_model)
                await wait_until(lambda: log.exists() and "set_model" in log.read_text())
                cancelled = await other.call("control", type="CANCEL", run=run)
                assert cancelled["status"] == "canceled"
    assert errors[0].code == ErrorCode.INVALID_STATE
    assert "the run ended" in errors[0].message
    assert_nothing_left(run)


async def test_a_control_request_the_cli_does_not_answer_times_out(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    script, _ = mute_cli(world.tmp)
    served = await start_daemon(nursery, world.config(binary=str(script), control_timeout=0.5))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, cwd=str(world.work))
            await wait_notice(client, run, "claude.event", type="control_response")
            error = await client.call_error("claude.set_model", run=run, model="x")
            assert error.code == ErrorCode.CONTROL_TIMEOUT
            assert "did not answer set_model within 0.5 s" in error.message
            closed = await client.call("claude.close", run=run)
    assert closed["outcome"] == "exited"
    assert_nothing_left(run)


async def test_the_watchdog_counts_only_while_a_turn_runs_and_pause_is_a_state(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    # The idle period is long enough for the CLI's own pauses on a loaded machine.
    served = await start_daemon(nursery, world.config(idle_timeout=2.0, idle_action="cancel"))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, prompt="hello", cwd=str(world.work))
            await wait_notice(client, run, "claude.turn_ended")
            await wait_notice(client, run, "claude.state", state="idle")
            # Idle for several idle periods: waiting for its user is not being stuck.
            await trio.sleep(5)
            status = await client.call("status", run=run)
            assert status["state"] == "running"
            assert status["claude"]["watchdog_fired"] == 0
            await client.call("control", type="PAUSE", run=run)
            await wait_notice(client, run, "claude.state", state="paused")
            await client.call("control", type="RESUME", run=run)
            await wait_notice(client, run, "claude.state", state="idle", count=2)
            # A turn that stalls mid-stream is stuck: the watchdog ends the run.
            await client.call("claude.send", run=run, content="[stall]")
            record = await client.wait_completed(run)
    assert record.completed is not None
    assert record.completed["reason"].startswith("watchdog: no stream-json event")
    assert record.completed["claude"]["watchdog_fired"] == 1
    assert [e for e in typed(client, run) if e["type"] == "watchdog"]
    assert_nothing_left(run)


async def test_the_watchdogs_interrupt_is_the_sessions_interrupt_not_a_signal(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config(idle_timeout=2.0, idle_action="interrupt"))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, prompt="[stall]", cwd=str(world.work))
            ended = await wait_notice(client, run, "claude.turn_ended")
            await wait_notice(client, run, "claude.state", state="idle")
            again = await client.call("claude.send", run=run, content="still there?")
            second = await wait_notice(client, run, "claude.turn_ended", turn=2)
            status = await client.call("status", run=run)
            await client.call("claude.close", run=run)
    assert ended["interrupted"] is True
    assert ended["result"]["terminal_reason"] == "aborted_streaming"
    assert [e["action"] for e in typed(client, run) if e["type"] == "watchdog"] == ["interrupt"]
    assert again["disposition"] == "started"
    assert second["result"]["result"] == PLAIN_TEXT
    assert status["claude"]["watchdog_fired"] == 1
    assert_nothing_left(run)


async def test_a_message_beyond_the_stdin_bound_is_refused_and_the_session_goes_on(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    config = world.config()
    small = attrs.evolve(config.supervision, stdin_max_pending=4096)
    served = await start_daemon(nursery, attrs.evolve(config, supervision=small))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, cwd=str(world.work))
            error = await client.call_error("claude.send", run=run, content="x" * 8192)
            assert error.code == ErrorCode.LIMIT_EXCEEDED
            assert error.data["limit"] == "stdin_max_pending"
            status = await client.call("status", run=run)
            assert status["claude"]["state"] == "idle"  # nothing was booked for it
            assert status["claude"]["turn"] == 0
            sent = await client.call("claude.send", run=run, content="small")
            assert sent == {"message": "m-1", "turn": 1, "disposition": "started"}
            ended = await wait_notice(client, run, "claude.turn_ended")
            await client.call("claude.close", run=run)
    assert ended["result"]["result"] == PLAIN_TEXT
    assert_nothing_left(run)


async def test_a_message_of_content_blocks_reaches_the_api(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    blocks = [{"type": "text", "text": "first block"}, {"type": "text", "text": "second block"}]
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, cwd=str(world.work))
            sent = await client.call("claude.send", run=run, content=blocks, id="blocks")
            started = await wait_notice(client, run, "claude.turn_started")
            await wait_notice(client, run, "claude.turn_ended")
            await client.call("claude.close", run=run)
    assert sent == {"message": "blocks", "turn": 1, "disposition": "started"}
    assert started["messages"] == ["blocks"]
    last_user = [m for m in world.api.requests[-1]["body"]["messages"] if m["role"] == "user"][-1]
    texts = [b.get("text") for b in last_user["content"] if isinstance(b, dict)]
    assert "first block" in texts
    assert "second block" in texts
    assert_nothing_left(run)


# A stand-in CLI that asks the host something cc-executor does not serve, once initialized.
ASKING_CLI = """\
import json, sys
log = open(%r, "a")
for line in sys.stdin:
    log.write(line)
    log.flush()
    msg = json.loads(line)
    if msg.get("type") == "control_request" and msg["request"]["subtype"] == "initialize":
        answer = {"subtype": "success", "request_id": msg["request_id"], "response": {}}
        print(json.dumps({"type": "control_response", "response": answer}), flush=True)
        ask = {"subtype": "hook_callback", "callback_id": "h1", "input": {}}
        print(json.dumps({"type": "control_request", "request_id": "cli-1", "request": ask}),
              flush=True)
"""


async def test_a_request_of_the_clis_the_daemon_does_not_serve_is_answered_with_an_error(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    log = world.tmp / "asking.log"
    script = world.tmp / "asking-claude"
    script.write_text(f"#!{sys.executable}\n" + ASKING_CLI % str(log))
    script.chmod(0o755)
    served = await start_daemon(nursery, world.config(binary=str(script)))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, cwd=str(world.work))
            await wait_until(lambda: log.exists() and "cli-1" in log.read_text())
            await client.call("claude.close", run=run)
    answers = [line for line in log.read_text().splitlines() if "cli-1" in line]
    assert len(answers) == 1
    assert '"subtype":"error"' in answers[0]
    assert "cc-executor does not handle hook_callback" in answers[0]
    assert_nothing_left(run)
