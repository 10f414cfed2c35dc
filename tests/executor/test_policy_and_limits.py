"""Refusals are clear errors that name their rule, and nothing runs."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import orjson
import pytest
import trio
from ccx_testing import make_config, open_client, start_daemon
from mcp_testing import Recording, check_frames, mcp_client
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url


async def test_allow_list_refuses_and_names_the_rule(nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_daemon(nursery, make_config(allowed_commands=("echo",)))
    marker = tmp_path / "ran"
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            exc = await client.call_error("execute", argv=["touch", str(marker)])
            assert exc.code == -32001
            assert exc.data["rule"] == "allowed_commands"
            assert "touch" in exc.message
            # A different executable that merely has an allowed name is refused too.
            fake = tmp_path / "echo"
            fake.write_text("#!/bin/sh\ntouch " + str(marker) + "\n")
            fake.chmod(0o755)
            exc = await client.call_error("execute", argv=[str(fake)])
            assert exc.code == -32001
            run = await client.execute(argv=["echo", "allowed"])
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == b"allowed\n"
    assert not marker.exists()


async def test_shell_is_refused_by_default(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            exc = await client.call_error("execute", command="echo $((1+2))", shell=True)
            assert exc.code == -32001
            assert exc.data["rule"] == "allow_shell"


async def test_shell_when_allowed(nursery: trio.Nursery) -> None:
    opened = await start_daemon(nursery, make_config(allow_shell=True))
    with trio.fail_after(10):
        async with open_client(opened.url) as client:
            run = await client.execute(command="echo $((1+2))", shell=True)
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == b"3\n"


@pytest.mark.parametrize(
    "command",
    [
        "echo a; touch {marker}",
        "echo $(touch {marker})",
        "echo `touch {marker}`",
        "echo a\ntouch {marker}",
        "echo a && touch {marker} | cat",
    ],
)
async def test_command_strings_cannot_inject(
    nursery: trio.Nursery, tmp_path: Path, command: str
) -> None:
    served = await start_daemon(nursery, make_config())
    marker = tmp_path / "injected"
    line = command.format(marker=marker)
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            run = await client.execute(command=line)
            record = await client.wait_completed(run)
    assert not marker.exists()
    # echo got the rest of the line as literal words.
    assert bytes(record.stdout).startswith(b"a") or b"touch" in record.stdout


async def test_nul_byte_is_refused(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            for params in (
                {"argv": ["echo", "a\0b"]},
                {"command": "echo a\0b"},
                {"argv": ["true"], "cwd": "/tmp\0x"},
                {"argv": ["true"], "env": {"A": "b\0c"}},
            ):
                exc = await client.call_error("execute", **params)
                assert exc.code == -32602, params


async def test_spawn_failures_say_why(nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            exc = await client.call_error("execute", argv=["no-such-command-ccx"])
            assert exc.code == -32006
            assert "not found" in exc.message
            exc = await client.call_error("execute", argv=["true"], cwd=str(tmp_path / "nope"))
            assert exc.code == -32006
            assert "cwd" in exc.message
            assert (await client.call("list")) == {"runs": []}


async def test_runs_per_connection_limit(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config(max_runs_per_connection=2))
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            first = await client.execute(argv=["sleep", "30"])
            await client.execute(argv=["sleep", "30"])
            exc = await client.call_error("execute", argv=["sleep", "30"])
            assert exc.code == -32003
            assert exc.data["limit"] == "max_runs_per_connection"
            await client.call("control", type="CANCEL", run=first)
            await client.wait_completed(first)
            # A finished run no longer counts.
            await client.execute(argv=["true"])


async def test_durable_runs_count_against_the_connection_that_started_them(
    nursery: trio.Nursery,
) -> None:
    """A client may not take every max_runs slot through durable runs: they count against the
    connection that started them (and the owner's limits) like any run."""
    served = await start_daemon(nursery, make_config(max_runs_per_connection=2))
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            durable = await client.execute(argv=["sleep", "30"], durable=True)
            await client.execute(argv=["sleep", "30"])
            exc = await client.call_error("execute", argv=["sleep", "30"], durable=True)
            assert exc.code == -32003
            assert exc.data["limit"] == "max_runs_per_connection"
        # The durable run goes on after its client; another connection starts its own.
        async with open_client(served.url) as other:
            assert (await other.call("status", run=durable))["state"] == "running"
            await other.execute(argv=["true"])
            await other.call("control", type="CANCEL", run=durable)


async def test_connection_limit(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config(max_connections=2))
    with trio.fail_after(20):
        async with (
            open_client(served.url),
            open_client(served.url),
            open_websocket_url(served.url) as ws,
        ):
            error = orjson.loads(await ws.get_message())
            assert error["error"]["code"] == -32003
            assert error["error"]["data"]["limit"] == "max_connections"
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason is not None
            assert info.value.reason.code == 1013


async def test_unknown_path_is_refused(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(10):
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(f"ws://127.0.0.1:{served.port}/nope"):
                pass
    assert info.value.status_code == 404


async def test_timeouts(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sleep", "30"], timeout=0.3)
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "timed_out"
            assert record.completed["timeout"] == "absolute"
            script = "echo tick; sleep 30"
            run = await client.execute(argv=["sh", "-c", script], idle_timeout=0.3)
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["timeout"] == "idle"
            assert bytes(record.stdout) == b"tick\n"


async def test_mcp_calls_in_flight_at_once_take_no_more_than_max_runs_per_connection(
    nursery: trio.Nursery,
) -> None:
    """MCP calls run at once: twelve starts sent together used to pass the check before any of
    them was spawned and counted (16 allowed, 20 ran)."""
    served = await start_daemon(nursery, make_config(max_runs_per_connection=3))
    record = Recording()
    arguments = {"argv": ["sleep", "30"], "wait": False}
    with trio.fail_after(20):
        async with mcp_client(served.url, record) as client:
            for n in range(12):
                params = {"name": "execute", "arguments": arguments}
                await client.send({"id": f"start-{n}", "method": "tools/call", "params": params})
            while len(client.responses) < 1 + 12:  # initialize's, and the twelve
                await client.receive()
            results = [client.responses[f"start-{n}"]["result"] for n in range(12)]
            refused = [r["structuredContent"]["error"] for r in results if r["isError"]]
            assert len(refused) == 12 - 3
            assert {e["data"]["limit"] for e in refused} == {"max_runs_per_connection"}
            assert served.daemon.runs.live == 3
    check_frames(record)


async def test_starts_at_once_from_many_connections_take_no_more_than_max_runs(
    nursery: trio.Nursery,
) -> None:
    served = await start_daemon(nursery, make_config(max_runs=3))
    execute = {"jsonrpc": "2.0", "id": 1, "method": "execute", "params": {"argv": ["sleep", "30"]}}
    with trio.fail_after(20):
        async with AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(open_websocket_url(served.url)) for _ in range(8)
            ]
            for ws in sockets:
                await ws.get_message()  # connected
            for ws in sockets:
                await ws.send_message(orjson.dumps(execute).decode())
            replies = []
            for ws in sockets:
                while "id" not in (reply := orjson.loads(await ws.get_message())):
                    pass
                replies.append(reply)
            refused = [r["error"] for r in replies if "error" in r]
            assert len(refused) == 8 - 3
            assert {e["data"]["limit"] for e in refused} == {"max_runs"}
            assert served.daemon.runs.live == 3
