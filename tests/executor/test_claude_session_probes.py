"""Live Claude sessions probed from outside, against the real CLI and the fake API: bad input
to every claude.* method is a clear error that changes nothing else; a mode the daemon's policy
forbids is refused as at the start; another identity's session does not exist; controls of a
paused run are refused at once (a cancelled MCP turn task still interrupts on RESUME); an
answer too long for the CLI stays pending; the CLI killed with requests in flight leaves none
unanswered; a `result` on a last line without a newline still ends its turn in the stream."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import attrs
import orjson
import trio
from ccx_testing import WireClient, open_client, start_daemon
from claude_world import (
    BOUND,
    ClaudeWorld,
    assert_nothing_left,
    finish,
    notices,
    start,
    typed,
    wait_notice,
)
from mcp_testing import Recording, check_frames, mcp_client

from cc_executor.executor.transport.frontdoor import Identity
from cc_executor.protocol import ErrorCode


async def initialized(client: WireClient, world: ClaudeWorld, **params: Any) -> str:
    run = await start(client, session=True, cwd=str(world.work), **params)
    await wait_notice(client, run, "claude.event", type="control_response")
    return run


async def touching(client: WireClient, world: ClaudeWorld) -> str:
    """A durable session whose first turn asks to `touch` a file (a permission request)."""
    prompt = f"[tool:touch {world.work / 'touched'}]"
    return await start(client, session=True, durable=True, prompt=prompt, cwd=str(world.work))


async def test_bypass_mode_is_refused_on_a_daemon_that_is_not_sandboxed(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await initialized(client, world)
            error = await client.call_error(
                "claude.set_permission_mode", run=run, mode="bypassPermissions"
            )
            assert error.code == ErrorCode.POLICY_REFUSED
            assert error.data["rule"] == "claude.sandboxed"
            # Nothing reached the CLI: no control request of the daemon's besides initialize.
            sent = [e for e in client.notifications if e["method"] == "claude.event"]
            assert [e["params"]["type"] for e in sent].count("control_response") == 1
            reply = await client.call("claude.set_permission_mode", run=run, mode="plan")
            assert "response" in reply
            reply = await client.call("claude.send", run=run, content="still here")
            assert reply["disposition"] == "started"
            await wait_notice(client, run, "claude.turn_ended")
            closed = await client.call("claude.close", run=run)
            assert closed["status"] == "completed"
    assert_nothing_left(run)


BAD_PARAMS: list[tuple[str, dict[str, Any], str]] = [
    ("claude.send", {}, "$.params.content"),
    ("claude.send", {"content": 5}, "$.params.content"),
    ("claude.send", {"content": []}, "$.params.content"),
    ("claude.send", {"content": [{"type": 3}]}, "$.params.content[0]"),
    ("claude.send", {"content": [{"type": "text"}]}, "$.params.content[0].text"),
    ("claude.send", {"content": [{"type": "text", "text": 5}]}, "$.params.content[0].text"),
    ("claude.send", {"content": "x", "id": 7}, "$.params.id"),
    ("claude.permission", {"request": "x", "behavior": "maybe"}, "$.params.behavior"),
    (
        "claude.permission",
        {"request": "x", "behavior": "deny", "updated_input": {}},
        "$.params.updated_input",
    ),
    ("claude.permission", {"request": "x", "behavior": "allow", "updated_input": []}, "input"),
    ("claude.set_permission_mode", {"mode": "yolo"}, "$.params.mode"),
    ("claude.set_model", {"model": ""}, "$.params.model"),
    ("claude.set_model", {"model": 3}, "$.params.model"),
    ("claude.interrupt", {"extra": 1}, "extra"),
]


async def test_bad_params_are_refused_and_the_session_goes_on(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await initialized(client, world)
            for method, params, where in BAD_PARAMS:
                error = await client.call_error(method, run=run, **params)
                assert error.code == ErrorCode.INVALID_PARAMS, (method, params, error)
                assert where in error.message, (method, params, error)
            for method in ("claude.send", "claude.close", "claude.interrupt"):
                error = await client.call_error(method, content="x")
                assert error.code == ErrorCode.INVALID_PARAMS
                assert "$.params.run" in error.message
            huge = await client.call_error("claude.send", run=run, content="x" * (5 << 20))
            assert huge.code == ErrorCode.LIMIT_EXCEEDED
            oneshot = await start(client, prompt="hi", cwd=str(world.work))
            for _ in range(2):  # running, then over
                error = await client.call_error("claude.send", run=oneshot, content="x")
                assert error.code == ErrorCode.INVALID_PARAMS
                assert "not a Claude session run" in error.message
                await finish(client, oneshot)
            status = await client.call("status", run=run)
            assert status["claude"]["state"] == "idle"
            assert status["claude"]["turn"] == 0  # nothing was booked as a turn's
            sent = await client.call(
                "claude.send", run=run, content=[{"type": "text", "text": "blocks"}], id="m"
            )
            assert sent == {"message": "m", "turn": 1, "disposition": "started"}
            ended = await wait_notice(client, run, "claude.turn_ended")
            assert ended["result"]["subtype"] == "success"
            await client.call("claude.close", run=run)
    assert_nothing_left(run)


async def test_the_cli_killed_with_requests_in_flight_answers_each_of_them(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config(control_timeout=30.0))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, prompt="first [slow:100]", cwd=str(world.work))
            started = await wait_notice(client, run, "process.started")
            await wait_notice(client, run, "claude.turn_started")
            os.kill(started["pid"], signal.SIGSTOP)  # it never answers what comes next
            requests = [
                ("claude.set_model", {"model": "x"}),
                ("claude.send", {"content": "queued"}),
                ("claude.interrupt", {}),
            ]
            for i, (method, params) in enumerate(requests):
                client.sent_ids.add(f"r{i}")
                message = {"jsonrpc": "2.0", "id": f"r{i}", "method": method}
                params = {"run": run, **params}
                await client.send_raw(orjson.dumps({**message, "params": params}).decode())
            await trio.sleep(0.5)
            os.kill(started["pid"], signal.SIGKILL)
            replies = [await client.response(f"r{i}") for i in range(len(requests))]
            record = await finish(client, run)
    assert [r["error"]["code"] for r in replies] == [ErrorCode.INVALID_STATE] * 3
    assert "the run ended" in replies[0]["error"]["message"]
    assert record.completed is not None
    assert record.completed["outcome"] == "signalled"
    assert record.completed["claude"]["state"] == "ended"
    assert_nothing_left(run)


TOKENS = {"alice-token-0123456789": Identity("alice"), "bob-token-012345678901": Identity("bob")}


async def test_another_identitys_session_is_a_run_that_does_not_exist(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, attrs.evolve(world.config(), tokens=TOKENS))
    with trio.fail_after(BOUND):
        async with (
            open_client(f"{served.url}?token=alice-token-0123456789") as alice,
            open_client(f"{served.url}?token=bob-token-012345678901") as bob,
        ):
            run = await touching(alice, world)
            asked = await wait_notice(alice, run, "claude.permission_request")
            nowhere = f"{served.daemon.instance}-000000000000"
            calls: list[tuple[str, dict[str, Any]]] = [
                ("claude.send", {"content": "x"}),
                ("claude.interrupt", {}),
                ("claude.set_model", {"model": "x"}),
                ("claude.set_permission_mode", {"mode": "plan"}),
                ("claude.permission", {"request": asked["request"], "behavior": "allow"}),
                ("claude.close", {}),
            ]
            for method, params in calls:
                seen = await bob.call_error(method, run=run, **params)
                unknown = await bob.call_error(method, run=nowhere, **params)
                assert seen.code == unknown.code == ErrorCode.RUN_NOT_FOUND, (method, seen)
                assert seen.message == unknown.message.replace(nowhere, run)
            status = await alice.call("status", run=run)
            assert [p["request"] for p in status["claude"]["pending"]] == [asked["request"]]
            await alice.call(
                "claude.permission", run=run, request=asked["request"], behavior="deny"
            )
            await wait_notice(alice, run, "claude.turn_ended")
            await alice.call("claude.close", run=run)
    assert not (world.work / "touched").exists()
    assert_nothing_left(run)


async def test_controls_are_refused_while_the_run_is_paused_and_a_message_waits(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, prompt="[slow:30]", cwd=str(world.work))
            await wait_notice(client, run, "claude.turn_started")
            await client.call("control", type="PAUSE", run=run)
            # Refused at once, not a -32007 after control_timeout that then takes effect on
            # RESUME behind the caller's back.
            for method, params in [
                ("claude.interrupt", {}),
                ("claude.set_model", {"model": "claude-other"}),
                ("claude.set_permission_mode", {"mode": "plan"}),
            ]:
                error = await client.call_error(method, run=run, **params)
                assert error.code == ErrorCode.INVALID_STATE, (method, error)
                assert error.data == {"run": run, "state": "paused"}
                assert "RESUME it before" in error.message
            # A message may wait in the pipe: the CLI reads it once resumed.
            sent = await client.call("claude.send", run=run, content="after the pause", id="b")
            assert sent["disposition"] == "queued"
            await client.call("control", type="RESUME", run=run)
            first = await wait_notice(client, run, "claude.turn_ended")
            await wait_notice(client, run, "claude.turn_ended", count=2)
            await client.call("claude.close", run=run)
    assert first["interrupted"] is False  # the refused interrupt did not happen later
    assert first["result"]["subtype"] == "success"
    assert world.api.requests[-1]["body"]["model"] != "claude-other"
    assert_nothing_left(run)


async def test_an_answer_too_long_for_the_cli_is_refused_and_the_request_stays_pending(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await touching(client, world)
            asked = await wait_notice(client, run, "claude.permission_request")
            request = asked["request"]
            # Once "decided: true" with the answer never written: the CLI waited forever.
            huge = {"command": "x" * (5 << 20)}
            error = await client.call_error(
                "claude.permission", run=run, request=request, behavior="allow", updated_input=huge
            )
            assert error.code == ErrorCode.LIMIT_EXCEEDED
            assert "still pending" in error.message
            long = await client.call_error(
                "claude.permission", run=run, request=request, behavior="deny", message="n" * 70000
            )
            assert long.code == ErrorCode.INVALID_PARAMS
            assert "$.params.message" in long.message
            status = await client.call("status", run=run)
            assert [p["request"] for p in status["claude"]["pending"]] == [request]
            assert status["claude"]["state"] == "requires_action"
            await client.call(
                "claude.permission", run=run, request=request, behavior="deny", message="no"
            )
            ended = await wait_notice(client, run, "claude.turn_ended")
            await client.call("claude.close", run=run)
    decided = notices(client, run, "claude.permission_decided")
    assert [(d["behavior"], d["message"]) for d in decided] == [("deny", "no")]
    assert [d["tool_name"] for d in ended["result"]["permission_denials"]] == ["Bash"]
    assert not (world.work / "touched").exists()
    assert_nothing_left(run)


async def test_a_turn_task_cancelled_while_the_run_is_paused_interrupts_on_resume(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config(control_timeout=30.0))
    record = Recording()
    with trio.fail_after(120):
        async with mcp_client(served.url, record) as client, open_client(served.url) as wire:
            started = await client.result(
                "tools/call",
                {"name": "claude_start", "arguments": {"cwd": str(world.work), "durable": True}},
            )
            run = started["structuredContent"]["run"]
            created = await client.result(
                "tools/call",
                {
                    "name": "claude_send",
                    "arguments": {"run": run, "content": "[slow:300]"},
                    "task": {},
                },
            )
            task_id = created["task"]["taskId"]
            await wire.call("attach", run=run, from_seq=0)
            await wait_notice(wire, run, "claude.turn_started")
            await wire.call("control", type="PAUSE", run=run)
            await client.send(
                {"id": "cancel", "method": "tasks/cancel", "params": {"taskId": task_id}}
            )
            await trio.sleep(1.0)
            assert "cancel" not in client.responses  # the turn cannot end while stopped
            await wire.call("control", type="RESUME", run=run)
            while "cancel" not in client.responses:
                await client.receive()
            cancelled = client.responses["cancel"]["result"]
            ended = await wait_notice(wire, run, "claude.turn_ended")
            await wire.call("claude.close", run=run)
    assert cancelled["status"] == "cancelled"
    assert ended["interrupted"] is True  # the cancelled task's turn, once the CLI runs again
    check_frames(record)
    assert_nothing_left(run)


async def test_close_of_a_paused_session_resumes_it_so_its_cli_exits_by_itself(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    # A stopped CLI cannot read EOF: it was left to close_grace and then the ladder.
    served = await start_daemon(nursery, world.config(close_grace=30.0))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await initialized(client, world, prompt="hello")
            await wait_notice(client, run, "claude.turn_ended")
            await client.call("control", type="PAUSE", run=run)
            closed = await client.call("claude.close", run=run)
    assert closed["status"] == "completed"
    assert closed["outcome"] == "exited"
    assert closed["exit_code"] == 0
    assert "resumed" in [e["method"].split(".")[-1] for e in client.runs[run].events]
    assert_nothing_left(run)


async def test_a_send_waiting_for_an_initialize_that_never_comes_is_refused_and_books_nothing(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    deaf = world.tmp / "deaf-claude"  # reads every line, answers none
    deaf.write_text(f"#!{sys.executable}\nimport sys\nfor line in sys.stdin:\n    pass\n")
    deaf.chmod(0o755)
    served = await start_daemon(nursery, world.config(binary=str(deaf), control_timeout=1.0))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, cwd=str(world.work))
            error = await client.call_error("claude.send", run=run, content="hi")
            record = await finish(client, run)
    assert error.code == ErrorCode.INVALID_STATE
    assert notices(client, run, "claude.turn_started") == []  # no turn that never was
    assert record.completed is not None
    assert record.completed["outcome"] == "cancelled"
    assert "did not answer initialize" in record.completed["reason"]
    assert record.completed["claude"]["turn"] == 0
    assert_nothing_left(run)


# A CLI that answers `initialize`, then ends its first turn with a `result` line it never
# finishes with a newline, and exits: the last line of a process that wrote no more.
UNFINISHED_RESULT = """\
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg["type"] == "control_request":
        answer = {"subtype": "success", "request_id": msg["request_id"], "response": {}}
        print(json.dumps({"type": "control_response", "response": answer}), flush=True)
    elif msg["type"] == "user":
        init = {"type": "system", "subtype": "init", "session_id": SESSION, "tools": []}
        print(json.dumps(init), flush=True)
        result = {"type": "result", "subtype": "success", "is_error": False, "result": "done",
                  "session_id": SESSION, "total_cost_usd": 0.5, "num_turns": 1}
        sys.stdout.write(json.dumps(result))
        break
"""


async def test_a_result_on_a_last_line_without_a_newline_ends_its_turn_before_the_completion(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    session = "00000000-0000-4000-8000-00000000cafe"
    cli = world.tmp / "unfinished-claude"
    cli.write_text(f"#!{sys.executable}\nSESSION = {session!r}\n{UNFINISHED_RESULT}")
    cli.chmod(0o755)
    served = await start_daemon(nursery, world.config(binary=str(cli)))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, durable=True, cwd=str(world.work))
            await client.call("claude.send", run=run, content="hi")
            record = await finish(client, run)
        async with open_client(served.url) as replay:
            await replay.call("attach", run=run, from_seq=0)
            replayed = await replay.wait_completed(run)
    assert record.completed is not None
    assert record.completed["status"] == "completed"
    assert record.completed["claude"]["turns"] == 1
    for got in (record, replayed):
        # The turn the status counts is one the stream ended too, before the completion.
        methods = [e["method"] for e in got.events]
        ended = [e for e in got.events if e["method"] == "claude.turn_ended"]
        assert len(ended) == 1, methods
        assert ended[0]["result"]["result"] == "done"
        assert methods.index("claude.turn_ended") < methods.index("process.completed")
        states = [e["state"] for e in got.events if e["method"] == "claude.state"]
        assert states[-1] == "idle", states
    results = [e for e in typed(client, run) if e["type"] == "result"]
    assert [e["result"] for e in results] == ["done"]  # its typed event, once
    assert_nothing_left(run)
