"""The one run lifecycle seen from a client: a reply before the events it causes, controls that
never wait behind stdin or a batch, a run failed by the daemon's own bug ending alone."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
from ccx_testing import RunRecord, Served, WireClient, make_config, open_client, start_daemon

from cc_executor.executor.rpc.runs import ConnectionSink
from cc_executor.executor.transport.auth import parse_token_env
from cc_executor.supervision.testing import marked_processes

QUIET = ["sleep", "60"]
FIREHOSE = ["sh", "-c", "yes 0123456789012345678901234567890123456789"]


async def send(client: WireClient, msg_id: int, method: str, **params: Any) -> None:
    client.sent_ids.add(msg_id)
    message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
    await client.send_raw(orjson.dumps(message).decode())


async def test_an_execute_is_answered_then_started_then_its_events_alone_and_in_a_batch(
    served: Served,
) -> None:
    """The reply and ``process.started`` go out together (one write) when the reply is sent
    alone, and the started notice follows the array when the execute was in a batch."""
    argv = ["sh", "-c", "echo out"]
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            for msg_id, in_batch in ((7, False), (8, True)):
                client.sent_ids.add(msg_id)
                request = {"jsonrpc": "2.0", "id": msg_id, "method": "execute"}
                request["params"] = {"argv": argv}
                await client.send_raw(orjson.dumps([request] if in_batch else request).decode())
                reply = await client.receive()
                answer = reply[0] if in_batch else reply
                assert isinstance(answer, dict)
                run = answer["result"]["run"]
                started = await client.receive()
                assert started["method"] == "process.started"
                assert started["params"]["run"] == run
                assert started["params"]["pid"] == answer["result"]["pid"]
                methods: list[str] = []
                while not methods or methods[-1] != "process.completed":
                    event = await client.receive()
                    assert event["params"]["run"] == run
                    methods.append(event["method"])
                assert methods == ["process.output", "process.completed"]


async def test_every_control_reply_is_the_very_next_frame(served: Served) -> None:
    with trio.fail_after(60):
        async with open_client(served.url) as client:
            run = await client.execute(argv=QUIET)
            assert (await client.receive())["method"] == "process.started"
            for i in range(40):
                kind = "PAUSE" if i % 2 == 0 else "RESUME"
                await send(client, 1000 + i, "control", type=kind, run=run)
                reply = await client.receive()
                assert reply.get("id") == 1000 + i, f"{kind} #{i}: {reply}"
                assert reply["result"]["status"] == ("paused" if kind == "PAUSE" else "resumed")
                event = await client.receive()
                assert event["method"] == (
                    "process.paused" if kind == "PAUSE" else "process.resumed"
                )
            await send(client, 2000, "control", type="CANCEL", run=run)
            reply = await client.receive()
            assert reply.get("id") == 2000
            assert (await client.receive())["method"] == "process.completed"


async def test_under_a_firehose_a_reply_still_precedes_its_event(served: Served) -> None:
    with trio.fail_after(60):
        async with open_client(served.url, max_message_size=64 * 1024 * 1024) as client:
            run = await client.execute(argv=FIREHOSE)
            await client.wait_output(run, b"\n")
            for i in range(20):
                kind = "PAUSE" if i % 2 == 0 else "RESUME"
                event_method = "process.paused" if kind == "PAUSE" else "process.resumed"
                await send(client, 3000 + i, "control", type=kind, run=run)
                replied = False
                while True:
                    frame = await client.receive()
                    if frame.get("id") == 3000 + i:
                        replied = True
                    elif frame.get("method") == event_method:
                        assert replied, f"{event_method} came before the reply to {kind} #{i}"
                        break
            result = await client.call("control", type="CANCEL", run=run)
            assert result["status"] == "canceled"
            await client.wait_completed(run)


async def test_a_batch_waiting_for_a_ladder_does_not_stop_the_reader(served: Served) -> None:
    stubborn = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"]
    with trio.fail_after(60):
        async with open_client(served.url) as client:
            run = await client.execute(argv=stubborn)
            await client.wait_output(run, b"ready\n")
            client.sent_ids.update({10, 11})
            batch = [
                {
                    "jsonrpc": "2.0",
                    "id": 10,
                    "method": "control",
                    "params": {"type": "CANCEL", "run": run},
                }
            ]
            await client.send_raw(orjson.dumps(batch).decode())
            await send(client, 11, "status")
            # The CANCEL waits out the TERM grace (the child ignores SIGTERM); the status
            # request sent after the batch is answered meanwhile.
            first = await client.receive()
            while isinstance(first, dict) and first.get("method") is not None:
                first = await client.receive()
            assert isinstance(first, dict), f"the batch was answered before status: {first}"
            assert first["id"] == 11
            response = await client.response(10)
            assert response["result"]["rung"] == "sigkill"
            await client.wait_completed(run)


async def test_a_stdin_write_the_child_never_reads_does_not_delay_controls(served: Served) -> None:
    with trio.fail_after(60):
        async with open_client(served.url) as client:
            run = await client.execute(argv=QUIET, stdin="pipe")
            # Far more than a pipe holds: the writes wait for a reader that never comes.
            chunk = "x" * (256 * 1024)
            for i in range(12):
                await send(client, 100 + i, "stdin", run=run, data=chunk)
            signalled = await client.call("signal", run=run, signal="SIGWINCH")
            assert signalled["status"] == "signalled"
            paused = await client.call("control", type="PAUSE", run=run)
            assert paused["status"] == "paused"
            canceled = await client.call("control", type="CANCEL", run=run)
            assert canceled["status"] == "canceled"
            await client.wait_completed(run)
            # Every stdin request is answered: written, or refused once the run ended.
            for i in range(12):
                response = await client.response(100 + i)
                assert "result" in response or response["error"]["code"] == -32005


async def test_a_bug_in_a_runs_sink_fails_that_run_alone(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands for a bug in the daemon's own code: the sink raises something that is not the
    client going away (patched, as no real fault makes a correct sink raise)."""
    real = ConnectionSink.deliver
    calls = {"n": 0}

    async def buggy(self: ConnectionSink, live: Any, event: Any, claude: Any) -> None:
        if "doomed" in live.argv:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("a bug")
        await real(self, live, event, claude)

    monkeypatch.setattr(ConnectionSink, "deliver", buggy)
    served = await start_daemon(nursery, make_config())
    loop = ["sh", "-c", "while :; do echo tick; sleep 0.01; done", "doomed"]
    with trio.fail_after(60):
        async with open_client(served.url) as client, open_client(served.url) as other:
            doomed = await client.execute(argv=loop)
            fine = await other.execute(argv=["sh", "-c", "echo fine; sleep 0.5; echo done"])
            record = await client.wait_completed(doomed)
            completed = record.completed
            assert completed is not None
            assert completed["outcome"] == "failed"
            assert completed["status"] == "failed"
            assert completed["reason"].startswith("internal error: RuntimeError: a bug")
            survivor = await other.wait_completed(fine)
            assert bytes(survivor.stdout) == b"fine\ndone\n"
            # The connection that saw the failure goes on serving.
            again = await client.execute(argv=["echo", "still here"])
            assert bytes((await client.wait_completed(again)).stdout) == b"still here\n"
    assert served.daemon.metrics.internal_errors["run"] == 1
    assert not marked_processes(doomed)


async def test_the_daemons_status_is_scoped_to_the_caller(nursery: trio.Nursery) -> None:
    tokens = parse_token_env(
        "alice:alice-token-0123456789,bob:bob-token-012345678901,root:root-token-012345678901:admin"
    )
    served = await start_daemon(nursery, make_config(tokens=tokens))
    base = served.url
    with trio.fail_after(30):
        async with (
            open_client(f"{base}?token=alice-token-0123456789") as alice,
            open_client(f"{base}?token=bob-token-012345678901") as bob,
            open_client(f"{base}?token=root-token-012345678901") as root,
        ):
            done = await alice.execute(argv=["true"])
            await alice.wait_completed(done)
            run = await alice.execute(argv=QUIET)
            mine = await alice.call("status")
            theirs = await bob.call("status")
            everything = await root.call("status")
            assert (mine["live_runs"], mine["connections"], mine["runs_started"]) == (1, 1, 2)
            assert (theirs["live_runs"], theirs["connections"], theirs["runs_started"]) == (0, 1, 0)
            assert everything["runs_started"] == 2
            assert "state_dir" not in mine
            assert "state_dir" not in theirs
            assert everything["live_runs"] == 1
            assert everything["connections"] == 3
            assert everything["state_dir"] == served.daemon.config.state_dir
            await alice.call("control", type="CANCEL", run=run)


async def test_a_reply_precedes_its_event_for_a_followed_durable_run(served: Served) -> None:
    """A durable run's events come from its journal through the connection's tail: a control's
    event waits at the gate until the reply is out, from the starting connection and from one
    that attached later."""
    with trio.fail_after(60):
        async with open_client(served.url) as first:
            run = await first.execute(argv=QUIET, durable=True)
            async with open_client(served.url) as second:
                second.runs[run] = RunRecord(run)
                await second.call("attach", run=run, from_seq=0)
                for i, client in enumerate([first, second] * 10):
                    kind = "PAUSE" if i % 2 == 0 else "RESUME"
                    caused = "process.paused" if kind == "PAUSE" else "process.resumed"
                    await send(client, 5000 + i, "control", type=kind, run=run)
                    replied = False
                    while True:
                        frame = await client.receive()
                        if frame.get("id") == 5000 + i:
                            replied = True
                        elif frame.get("method") == caused:
                            assert replied, f"{caused} came before the reply to {kind} #{i}"
                            break
                await second.call("control", type="CANCEL", run=run)
                await second.wait_completed(run)
