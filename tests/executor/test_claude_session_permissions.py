"""Remote approval in Claude session runs, against the real CLI and the fake API: every
`can_use_tool` request goes to each connection following the run, is decided once — by a
client, an operator's rule, or the timeout's default — and the CLI does what was decided
(checked on the file system)."""

from __future__ import annotations

from typing import Any

import trio
from ccx_testing import WireClient, open_client, start_daemon
from claude_world import BOUND, ClaudeWorld, assert_nothing_left, notices, start, wait_notice

from cc_executor.executor.config.claude import PermissionRule
from cc_executor.protocol import ErrorCode


def connection_id(client: WireClient) -> str:
    greeting = client.notifications[0]
    assert greeting["method"] == "connected"
    return str(greeting["params"]["session_id"])


async def touching(client: WireClient, world: ClaudeWorld, name: str, **params: Any) -> str:
    """A durable session whose first turn asks to `touch` a file in the work directory."""
    target = world.work / name
    return await start(
        client, session=True, durable=True, prompt=f"[tool:touch {target}]",
        cwd=str(world.work), **params,
    )  # fmt: skip


async def test_allow_from_one_connection_while_another_watches(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    target = world.work / "allowed"
    with trio.fail_after(BOUND):
        async with open_client(served.url) as owner, open_client(served.url) as viewer:
            run = await touching(owner, world, "allowed")
            attached = await viewer.call("attach", run=run, from_seq=0)
            assert attached["status"] == "attached"
            asked = await wait_notice(owner, run, "claude.permission_request")
            seen = await wait_notice(viewer, run, "claude.permission_request")
            assert seen == asked  # the same notice, the same seq
            assert asked["tool"] == "Bash"
            assert asked["input"]["command"] == f"touch {target}"
            assert asked["tool_use_id"].startswith("toolu_")
            assert asked["suggestions"]
            assert asked["expires_at"] > 0
            status = await owner.call("status", run=run)
            assert status["claude"]["state"] == "requires_action"
            assert [p["request"] for p in status["claude"]["pending"]] == [asked["request"]]
            await wait_notice(owner, run, "claude.state", state="requires_action")
            reply = await viewer.call(
                "claude.permission", run=run, request=asked["request"], behavior="allow"
            )
            assert reply == {"decided": True}
            decided = await wait_notice(owner, run, "claude.permission_decided")
            assert decided["by"] == f"client:local/{connection_id(viewer)}"
            assert decided["behavior"] == "allow"
            assert await wait_notice(viewer, run, "claude.permission_decided") == decided
            # A second answer loses, and is told who won.
            late = await owner.call_error(
                "claude.permission", run=run, request=asked["request"], behavior="deny"
            )
            assert late.code == ErrorCode.ALREADY_DECIDED
            assert late.code == -32014
            assert late.data["decided_by"] == decided["by"]
            assert late.data["behavior"] == "allow"
            assert late.data["at"] == decided["at"]
            ended = await wait_notice(owner, run, "claude.turn_ended")
            unknown = await owner.call_error(
                "claude.permission", run=run, request="no-such", behavior="allow"
            )
            assert unknown.code == ErrorCode.INVALID_PARAMS
            await owner.call("claude.close", run=run)
    assert target.exists()  # the tool ran
    assert ended["result"]["result"] == "The tool said: (Bash completed with no output)"
    assert ended["result"]["permission_denials"] == []
    assert_nothing_left(run)


async def test_deny_reaches_the_cli_and_the_tool_does_not_run(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await touching(client, world, "denied")
            asked = await wait_notice(client, run, "claude.permission_request")
            await client.call(
                "claude.permission",
                run=run,
                request=asked["request"],
                behavior="deny",
                message="not today",
            )
            ended = await wait_notice(client, run, "claude.turn_ended")
            await client.call("claude.close", run=run)
    decided = notices(client, run, "claude.permission_decided")
    assert [(d["behavior"], d["message"]) for d in decided] == [("deny", "not today")]
    assert not (world.work / "denied").exists()
    assert "not today" in ended["result"]["result"]
    denials = ended["result"]["permission_denials"]
    assert [d["tool_name"] for d in denials] == ["Bash"]
    assert_nothing_left(run)


async def test_an_unanswered_request_is_decided_by_the_default(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config(permission_timeout=0.5))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await touching(client, world, "unanswered")
            asked = await wait_notice(client, run, "claude.permission_request")
            decided = await wait_notice(client, run, "claude.permission_decided")
            ended = await wait_notice(client, run, "claude.turn_ended")
            late = await client.call_error(
                "claude.permission", run=run, request=asked["request"], behavior="allow"
            )
            await client.call("claude.close", run=run)
    assert decided["by"] == "timeout"
    assert decided["behavior"] == "deny"
    assert decided["message"] == "no answer within 0.5 s"
    assert late.data["decided_by"] == "timeout"
    assert not (world.work / "unanswered").exists()
    assert "no answer within 0.5 s" in ended["result"]["result"]
    assert_nothing_left(run)


async def test_an_operator_rule_decides_without_asking(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    rule = PermissionRule(
        name="no-touch-here",
        tool="Ba*",
        input_pattern=r"touch .*/ruled$",
        behavior="deny",
        message="the operator says no",
    )
    served = await start_daemon(nursery, world.config(permission_rules=(rule,)))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await touching(client, world, "ruled")
            ended = await wait_notice(client, run, "claude.turn_ended")
            await client.call("claude.close", run=run)
    asked = notices(client, run, "claude.permission_request")
    decided = notices(client, run, "claude.permission_decided")
    assert len(asked) == 1  # still told, and journaled
    assert [(d["by"], d["behavior"]) for d in decided] == [("rule:no-touch-here", "deny")]
    assert "requires_action" not in [s["state"] for s in notices(client, run, "claude.state")]
    assert not (world.work / "ruled").exists()
    assert "the operator says no" in ended["result"]["result"]
    assert_nothing_left(run)


async def test_an_interrupt_withdraws_the_pending_request(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await touching(client, world, "withdrawn")
            asked = await wait_notice(client, run, "claude.permission_request")
            await client.call("claude.interrupt", run=run)
            decided = await wait_notice(client, run, "claude.permission_decided")
            ended = await wait_notice(client, run, "claude.turn_ended")
            late = await client.call_error(
                "claude.permission", run=run, request=asked["request"], behavior="allow"
            )
            status = await client.call("status", run=run)
            await client.call("claude.close", run=run)
    assert decided["by"] == "cancelled"
    assert late.data["decided_by"] == "cancelled"
    assert ended["interrupted"] is True
    assert status["claude"]["pending"] == []
    assert not (world.work / "withdrawn").exists()
    assert_nothing_left(run)


async def test_a_pending_request_is_not_idleness(nursery: trio.Nursery, world: ClaudeWorld) -> None:
    # The request waits three idle periods for its answer; the watchdog must not end the run.
    # (The idle period is long enough for the CLI's own pauses on a loaded machine.)
    config = world.config(idle_timeout=2.0, idle_action="cancel", permission_timeout=6.0)
    served = await start_daemon(nursery, config)
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await touching(client, world, "waited")
            decided = await wait_notice(client, run, "claude.permission_decided")
            assert decided["by"] == "timeout"  # not "cancelled": the run lives on
            ended = await wait_notice(client, run, "claude.turn_ended")
            status = await client.call("status", run=run)
            await client.call("claude.close", run=run)
    assert decided["by"] == "timeout"
    assert ended["result"]["subtype"] == "success"
    assert status["claude"]["watchdog_fired"] == 0
    assert_nothing_left(run)


async def test_allow_with_an_updated_input_runs_the_updated_input(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    instead = world.work / "instead"
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await touching(client, world, "asked-for")
            asked = await wait_notice(client, run, "claude.permission_request")
            updated = {**asked["input"], "command": f"touch {instead}"}
            await client.call(
                "claude.permission",
                run=run,
                request=asked["request"],
                behavior="allow",
                updated_input=updated,
            )
            decided = await wait_notice(client, run, "claude.permission_decided")
            await wait_notice(client, run, "claude.turn_ended")
            await client.call("claude.close", run=run)
    assert decided["updated_input"] == updated
    assert instead.exists()
    assert not (world.work / "asked-for").exists()
    assert_nothing_left(run)


async def test_a_message_sent_while_a_tool_waits_is_taken_by_the_running_turn(
    nursery: trio.Nursery, world: ClaudeWorld
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await touching(client, world, "boundary")
            asked = await wait_notice(client, run, "claude.permission_request")
            sent = await client.call("claude.send", run=run, content="and then?", id="mid")
            assert sent == {"message": "mid", "turn": 1, "disposition": "queued"}
            await client.call(
                "claude.permission", run=run, request=asked["request"], behavior="allow"
            )
            taken = await wait_notice(client, run, "claude.message")
            ended = await wait_notice(client, run, "claude.turn_ended")
            await client.call("claude.close", run=run)
    # The CLI took it at the tool boundary, inside turn 1: no second turn for it.
    assert taken == {**taken, "message": "mid", "turn": 1}
    assert ended["turn"] == 1
    assert [s["turn"] for s in notices(client, run, "claude.turn_started")] == [1]
    assert (world.work / "boundary").exists()
    assert_nothing_left(run)
