"""A claude.* request's reply precedes the session notices it causes, against the real CLI and
the fake API, for a run whose events this connection pumps and for a durable one it follows
through the journal.

Observed on main (an outside probe, four rounds each): ``claude.turn_started`` and
``claude.state`` came before claude.send's reply every time, ``claude.permission_decided``
before claude.permission's now and then, and the interrupted turn's ``claude.turn_ended``
before claude.interrupt's; docs/protocol.md promises the reply first.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import pytest
import trio
from ccx_testing import WireClient, open_client, start_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, start, wait_notice
from faults_net_testing import reset

from bench.rawws import RawWebSocket, open_raw_websocket

SESSION_NOTICES = (
    "claude.turn_started",
    "claude.message",
    "claude.turn_ended",
    "claude.permission_request",
    "claude.permission_decided",
    "claude.state",
)


async def reply_and_before(
    client: WireClient, method: str, **params: Any
) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """The result of `method`, and the run's session notices that arrived before it."""
    before = len(client.notifications)
    result = await client.call(method, **params)
    early = [
        (n["method"], n["params"])
        for n in client.notifications[before:]
        if n["method"] in SESSION_NOTICES
    ]
    return result, early


@pytest.mark.parametrize("durable", [False, True], ids=["pumped", "journaled"])
async def test_each_reply_precedes_the_notices_its_request_causes(
    nursery: trio.Nursery, world: ClaudeWorld, durable: bool
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, durable=durable, cwd=str(world.work))
            for turn in (1, 2, 3):
                target = world.work / f"touched-{turn}"
                sent, early = await reply_and_before(
                    client, "claude.send", run=run, content=f"[tool:touch {target}]"
                )
                assert sent["turn"] == turn
                assert sent["disposition"] == "started"
                # Neither the turn it started nor the state it caused came before it.
                assert [p for m, p in early if p.get("turn") == turn] == []
                assert [p for m, p in early if p.get("state") == "running"] == []
                await wait_notice(client, run, "claude.turn_started", turn=turn)
                asked = await wait_notice(client, run, "claude.permission_request", count=turn)
                decided, early = await reply_and_before(
                    client,
                    "claude.permission",
                    run=run,
                    request=asked["request"],
                    behavior="allow",
                )
                assert decided == {"decided": True}
                assert [
                    p for m, p in early
                    if m == "claude.permission_decided" and p["request"] == asked["request"]
                ] == []  # fmt: skip
                await wait_notice(
                    client, run, "claude.permission_decided", request=asked["request"]
                )
                await wait_notice(client, run, "claude.turn_ended", turn=turn)
                assert target.exists()
            slow, _ = await reply_and_before(client, "claude.send", run=run, content="[slow:100]")
            await wait_notice(client, run, "claude.turn_started", turn=slow["turn"])
            interrupted, early = await reply_and_before(client, "claude.interrupt", run=run)
            assert interrupted == {"interrupted": True, "turn": slow["turn"]}
            assert [
                p for m, p in early if m == "claude.turn_ended" and p["turn"] == slow["turn"]
            ] == []
            ended = await wait_notice(client, run, "claude.turn_ended", turn=slow["turn"])
            assert ended["interrupted"] is True
            await client.call("claude.close", run=run)


# A stand-in CLI that opens a turn for each message and, asked to interrupt, ends the turn
# first and answers the interrupt only afterwards, in a later write — or never.
RESULT_FIRST_CLI = """\
import json, sys, time
answer_interrupt = sys.argv[1] == "answer"
def say(obj):
    print(json.dumps(obj), flush=True)
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("type") == "user":
        say({"type": "system", "subtype": "init", "session_id": "s-1", "tools": []})
    elif msg.get("type") == "control_request":
        subtype = msg["request"]["subtype"]
        answer = {"subtype": "success", "request_id": msg["request_id"], "response": {}}
        if subtype == "interrupt":
            say({"type": "result", "subtype": "error_during_execution", "is_error": True,
                 "session_id": "s-1"})
            if not answer_interrupt:
                continue
            time.sleep(0.2)
        say({"type": "control_response", "response": answer})
"""


@pytest.mark.parametrize("answer", ["answer", "never"])
async def test_an_interrupt_whose_turn_ends_before_the_cli_answers_it_is_replied_first(
    nursery: trio.Nursery, world: ClaudeWorld, answer: str
) -> None:
    """The turn's end is what the interrupt asked for: it answers the interrupt (whether the
    CLI's own answer is still to come or never comes), and the reply precedes it."""
    script = world.tmp / "result-first-claude"
    script.write_text(
        f"#!{sys.executable}\n" + RESULT_FIRST_CLI.replace("sys.argv[1]", repr(answer))
    )
    script.chmod(0o755)
    served = await start_daemon(nursery, world.config(binary=str(script), control_timeout=30))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await start(client, session=True, prompt="go", cwd=str(world.work))
            await wait_notice(client, run, "claude.turn_started", turn=1)
            interrupted, early = await reply_and_before(client, "claude.interrupt", run=run)
            assert interrupted == {"interrupted": True, "turn": 1}
            assert [p for m, p in early if m == "claude.turn_ended"] == []
            ended = await wait_notice(client, run, "claude.turn_ended", turn=1)
            assert ended["interrupted"] is True
            again = await client.call("claude.send", run=run, content="more")
            assert again["turn"] == 2
            await client.call("claude.close", run=run)


async def reply_to(raw: RawWebSocket, request_id: int) -> dict[str, Any]:
    while True:
        _, payload = await raw.read_frame()
        message = orjson.loads(payload)
        if isinstance(message, dict) and message.get("id") == request_id:
            return message


@pytest.mark.parametrize("durable", [False, True], ids=["pumped", "journaled"])
async def test_a_client_reset_right_after_its_request_leaves_no_run_waiting_at_a_gate(
    nursery: trio.Nursery, world: ClaudeWorld, durable: bool
) -> None:
    """A TCP reset right after a claude.send or claude.permission, whether or not the daemon
    read it before the reset (its hold taken, its reply never sent): no run is left waiting
    at the gone connection's gate — the pumped run ends as its client went, the journaled
    one goes on and can be closed — and the daemon serves."""
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        runs = []
        for method in ("claude.send", "claude.permission"):
            async with open_raw_websocket(served.port) as raw:
                await raw.read_frame()  # connected
                start = {"session": True, "durable": durable, "cwd": str(world.work)}
                target = world.work / f"reset-{method}"
                if method == "claude.permission":
                    start["prompt"] = f"[tool:touch {target}]"
                await raw.send_frame(0x1, rpc(1, "claude", start))
                run = (await reply_to(raw, 1))["result"]["run"]
                runs.append(run)
                params: dict[str, Any] = {"run": run, "content": "hello"}
                if method == "claude.permission":
                    while True:
                        _, payload = await raw.read_frame()
                        notice = orjson.loads(payload)
                        if notice.get("method") == "claude.permission_request":
                            break
                    params = {"run": run, "request": notice["params"]["request"]}
                    params["behavior"] = "allow"
                await raw.send_frame(0x1, rpc(2, method, params))
                reset(raw.stream.socket)
        async with open_client(served.url) as client:
            for run in runs:
                if durable:  # it goes on without its client, and can be closed
                    closed = await client.call("claude.close", run=run)
                    assert closed["outcome"] == "exited"
            # The pumped runs ended with their connection (their completions sent to nobody).
            await wait_until(lambda: served.daemon.runs.live == 0)
            assert (await client.call("status", run=runs[0]))["state"] == "completed"


def rpc(request_id: int, method: str, params: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
