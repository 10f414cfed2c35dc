"""The Claude session scenarios of the JSON-RPC tests, through MCP with the official SDK
clients, 1.x and 2.x (tests/mcp_sdk_sessions.py), against the real daemon, the real CLI and
the fake API: permission decisions by a client, by the timeout's default and by an
operator's rule; a durable session taken over by a second client while a request is
pending; a daemon SIGKILL, the run reported lost, the Claude session resumed; a call each
SDK gives up while its message waits behind another client's turn (only its own turn is
interrupted: before the fix, the other client's was).  Every frame the daemon sends passes
the conformance checks."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import trio
from ccx_testing import run_daemon, start_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, daemon_env, reap_zombies
from mcp_testing import check_frames, recording_proxy, run_script, sdk_python

from cc_executor.executor.config.policyfile import parse_policy
from cc_executor.supervision.testing import marked_processes

pytestmark = pytest.mark.slow
SCRIPT = "mcp_sdk_sessions.py"
POLICY = """
[[claude.permission_rules]]
name = "no-touch-here"
tool = "Ba*"
input_pattern = 'touch .*/ruled$'
behavior = "deny"
message = "the operator says no"
"""


ERAS = {"mcp1": "2025-11-25", "mcp2": "2026-07-28"}


@pytest.fixture(scope="session", params=sorted(ERAS))
def sdk(request: pytest.FixtureRequest) -> tuple[Any, str]:
    """An SDK's python, and the protocol version its client negotiates with the daemon."""
    name: str = request.param
    return sdk_python(name), ERAS[name]


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


async def ask(
    nursery: trio.Nursery,
    world: ClaudeWorld,
    sdk: tuple[Any, str],
    name: str,
    answer: str,
    **config: Any,
) -> Any:
    """The `ask` scenario on a daemon of its own; checks the frames."""
    served = await start_daemon(nursery, world.config(**config))
    target = world.work / name
    with trio.fail_after(BOUND * 2):
        async with recording_proxy(served.url) as (url, record):
            out = await run_script(sdk[0], SCRIPT, url, "ask", str(world.work), str(target), answer)
    check_frames(record)
    assert out["protocol_version"] == sdk[1]
    assert out["closed"]["structuredContent"]["outcome"] == "exited"
    assert_nothing_left(out["started"]["structuredContent"]["run"])
    return out


async def test_a_deny_through_claude_permission_reaches_the_cli_and_the_tool_does_not_run(
    nursery: trio.Nursery, world: ClaudeWorld, sdk: tuple[Any, str]
) -> None:
    out = await ask(nursery, world, sdk, "denied", "deny")
    asked = out["asked"]
    assert asked["state"] == "requires_action"
    pending = asked["pending"][0]
    assert pending["tool"] == "Bash"
    assert pending["input"]["command"] == f"touch {world.work / 'denied'}"
    assert out["answer"]["structuredContent"]["decided"] is True
    assert not (world.work / "denied").exists()
    # The view: nothing pending, the turn's result carries the denial and its message.
    read = out["read"]
    assert read["pending"] == []
    result = read["turns_recorded"][0]["result"]
    assert "not today" in result["result"]
    assert [d["tool_name"] for d in result["permission_denials"]] == ["Bash"]
    decided = of_type(out["events"], "claude.permission_decided")
    assert [(d["behavior"], d["message"]) for d in decided] == [("deny", "not today")]
    assert decided[0]["by"].startswith("client:")
    [seen] = read["turns_recorded"][0]["permissions"]  # the view says who decided what
    assert seen == {
        "request": pending["request"],
        "tool": "Bash",
        "input": pending["input"],
        "behavior": "deny",
        "by": decided[0]["by"],
        "at": decided[0]["at"],
        "message": "not today",
    }
    late = out["late"]
    assert late["isError"] is True
    assert late["structuredContent"]["error"]["data"]["decided_by"] == decided[0]["by"]


async def test_a_request_nobody_answers_is_decided_by_the_timeouts_default(
    nursery: trio.Nursery, world: ClaudeWorld, sdk: tuple[Any, str]
) -> None:
    out = await ask(nursery, world, sdk, "unanswered", "none", permission_timeout=0.5)
    assert not (world.work / "unanswered").exists()
    read = out["read"]
    assert read["pending"] == []
    result = read["turns_recorded"][0]["result"]
    assert "no answer within 0.5 s" in result["result"]
    assert [d["tool_name"] for d in result["permission_denials"]] == ["Bash"]
    decided = of_type(out["events"], "claude.permission_decided")
    assert [(d["by"], d["behavior"]) for d in decided] == [("timeout", "deny")]
    [seen] = read["turns_recorded"][0]["permissions"]
    assert (seen["tool"], seen["by"], seen["behavior"]) == ("Bash", "timeout", "deny")
    assert seen["message"] == "no answer within 0.5 s"
    assert out["late"]["structuredContent"]["error"]["data"]["decided_by"] == "timeout"


async def test_an_operator_rule_from_the_policy_file_decides_without_asking(
    nursery: trio.Nursery, world: ClaudeWorld, sdk: tuple[Any, str], tmp_path: Path
) -> None:
    rules = parse_policy(POLICY, str(tmp_path / "policy.toml")).permission_rules
    out = await ask(nursery, world, sdk, "ruled", "none", permission_rules=rules)
    assert not (world.work / "ruled").exists()
    result = out["read"]["turns_recorded"][0]["result"]
    assert "the operator says no" in result["result"]
    events = out["events"]
    assert len(of_type(events, "claude.permission_request")) == 1  # still told, and journaled
    decided = of_type(events, "claude.permission_decided")
    assert [(d["by"], d["behavior"]) for d in decided] == [("rule:no-touch-here", "deny")]
    [seen] = out["read"]["turns_recorded"][0]["permissions"]
    assert (seen["by"], seen["behavior"]) == ("rule:no-touch-here", "deny")
    assert seen["input"]["command"] == f"touch {world.work / 'ruled'}"
    assert seen["message"] == "the operator says no"
    states = [e["state"] for e in of_type(events, "claude.state")]
    assert "requires_action" not in states  # nobody was asked


async def test_a_durable_session_taken_over_by_a_new_mcp_client_while_a_request_waits(
    nursery: trio.Nursery, world: ClaudeWorld, sdk: tuple[Any, str]
) -> None:
    served = await start_daemon(nursery, world.config())
    target = world.work / "made"
    with trio.fail_after(BOUND * 2):
        async with recording_proxy(served.url) as (url, record):
            first = await run_script(
                sdk[0], SCRIPT, url, "durable_ask", str(world.work), str(target)
            )
            run = first["run"]
            # The only client is gone; the session waits for its answer.
            assert marked_processes(run)
            before = first["events"]
            last_seq = before[-1]["seq"]
            second = await run_script(sdk[0], SCRIPT, url, "durable_answer", run, str(last_seq))
        await wait_until(lambda: not marked_processes(run))
    check_frames(record)
    assert first["protocol_version"] == second["protocol_version"] == sdk[1]
    asked = first["asked"]["pending"][0]
    found = second["found"]
    assert found["state"] == "requires_action"
    assert [p["request"] for p in found["pending"]] == [asked["request"]]
    assert found["pending"][0]["input"] == asked["input"]
    assert second["answer"]["structuredContent"]["decided"] is True
    assert target.exists()
    read = second["read"]
    assert read["turns_recorded"][0]["result"]["subtype"] == "success"
    [seen] = read["turns_recorded"][0]["permissions"]  # the view followed from the journal
    assert (seen["request"], seen["behavior"]) == (asked["request"], "allow")
    assert seen["by"].startswith("client:local/")
    assert second["closed"]["structuredContent"]["outcome"] == "exited"
    # Nothing duplicated, nothing missing: the first client's events and the second's after
    # them are 1..N exactly once, and the same as the whole stream read at the end.
    joined = before + second["after"]
    whole = second["whole"]
    assert [e["seq"] for e in joined] == list(range(1, len(joined) + 1))
    assert joined == whole
    kinds = [e["type"] for e in whole]
    for kind in ("claude.permission_request", "claude.permission_decided"):
        assert kinds.count(kind) == 1
    assert kinds.count("claude.turn_started") == kinds.count("claude.turn_ended") == 1
    assert kinds.index("claude.permission_request") < len(before)  # seen by the first
    assert kinds.index("claude.permission_decided") >= len(before)  # made by the second
    assert kinds[-1] == "completed"
    assert_nothing_left(run)


def _user_texts(body: dict[str, Any]) -> list[str]:
    return [
        block.get("text", "") if isinstance(block, dict) else str(block)
        for message in body["messages"]
        if message["role"] == "user"
        for block in (
            message["content"] if isinstance(message["content"], list) else [message["content"]]
        )
    ]


async def test_after_a_daemon_sigkill_mcp_sees_the_run_lost_and_resumes_the_session(
    world: ClaudeWorld, sdk: tuple[Any, str], tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    env = daemon_env(world)
    with trio.fail_after(BOUND * 3):
        async with run_daemon("--state-dir", state, env=env) as daemon:
            before = await run_script(sdk[0], SCRIPT, daemon.url, "before_kill", str(world.work))
            run = before["run"]
            await wait_until(lambda: len(world.api.requests) >= 2)  # turn 2 is running
            assert marked_processes(run)
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
        async with run_daemon("--state-dir", state, env=env) as daemon:
            await wait_until(lambda: not marked_processes(run), bound=15)
            seen = len(world.api.requests)
            session_id = before["running"]["session_id"]
            async with recording_proxy(daemon.url) as (url, record):
                after = await run_script(
                    sdk[0], SCRIPT, url, "after_kill", run, session_id, str(world.work)
                )
    check_frames(record)
    assert before["protocol_version"] == after["protocol_version"] == sdk[1]
    assert before["first"]["structuredContent"]["turn"] == 1
    lost = after["status"]["structuredContent"]
    assert lost["outcome"] == "lost"
    assert lost["claude"]["session_id"] == session_id
    assert lost["claude"]["turns"] == 1
    assert lost["claude"]["recovered"] is True
    # The session tools refuse the ended run, saying so; its journal replays through MCP.
    refused = after["lost_view"]
    assert refused["isError"] is True
    assert refused["structuredContent"]["error"]["data"]["state"] == "completed"
    replayed = after["replayed"]
    assert [e["turn"] for e in of_type(replayed, "claude.turn_started")] == [1, 2]
    assert [e["turn"] for e in of_type(replayed, "claude.turn_ended")] == [1]
    resumed = after["resumed"]["structuredContent"]
    assert (resumed["turn"], resumed["result"]["subtype"]) == (1, "success")
    busy = after["busy"]
    assert busy["isError"] is True
    assert busy["structuredContent"]["error"]["code"] == -32005
    assert after["view"]["structuredContent"]["session_id"] == session_id
    assert f"--resume={session_id}" in after["new_status"]["structuredContent"]["argv"]
    assert after["closed"]["structuredContent"]["outcome"] == "exited"
    # The new process sent the earlier conversation with the new message.
    texts = _user_texts(world.api.requests[seen]["body"])
    assert any("remember the word PELICAN" in text for text in texts)
    assert any("which word?" in text for text in texts)
    assert not marked_processes(resumed["run"])
    reap_zombies()  # the killed daemon's CLI, if this process is its subreaper


async def test_a_call_given_up_behind_another_clients_turn_interrupts_only_its_own_turn(
    nursery: trio.Nursery, world: ClaudeWorld, sdk: tuple[Any, str]
) -> None:
    """Bob's turn runs; Alice's message waits behind it and her SDK gives the call up (the
    notifications/cancelled of each SDK): Bob's turn ends whole, Alice's is interrupted."""
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND * 2):
        async with (
            recording_proxy(served.url) as (bob_url, bob_record),
            recording_proxy(served.url) as (alice_url, alice_record),
        ):
            out = await run_script(
                sdk[0], SCRIPT, bob_url, "queued_cancel", alice_url, str(world.work)
            )
    check_frames(bob_record)
    check_frames(alice_record)
    assert out["protocol_version"] == sdk[1]
    cancels = [
        message
        for side, message in alice_record.frames
        if side == "client" and message.get("method") == "notifications/cancelled"
    ]
    assert len(cancels) == 1
    bob = out["bob"]["structuredContent"]
    assert (bob["turn"], bob["interrupted"]) == (1, False)
    assert bob["text"] == "".join(f"chunk {i} " for i in range(30))
    turns = {turn["turn"]: turn for turn in out["read"]["turns_recorded"]}
    assert (turns[1]["messages"], turns[1]["interrupted"]) == (["bob-msg"], False)
    assert (turns[2]["messages"], turns[2]["interrupted"]) == (["alice-msg"], True)
    assert out["closed"]["structuredContent"]["outcome"] == "exited"
    assert_nothing_left(out["run"])
