"""Operating the daemon: tokens, Origin, probes, graceful drain, and metrics."""

from __future__ import annotations

import re
import signal

import pytest
import trio
from ccx_testing import (
    Served,
    WireClient,
    make_config,
    open_client,
    run_daemon,
    start_daemon,
    wait_until,
)
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from cc_executor.executor.transport.frontdoor import Identity
from cc_executor.protocol.mcp import SUBPROTOCOL

TOKENS = {"alice-token-0123456789": Identity("alice")}


async def http_get(port: int, path: str) -> tuple[int, str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def test_tokens_and_origins(nursery: trio.Nursery) -> None:
    served = await start_daemon(
        nursery,
        make_config(tokens=TOKENS, allowed_origins=("https://console.example",)),
    )
    url = served.url
    with trio.fail_after(20):
        for suffix, headers, status in [
            ("", [], 401),
            ("?token=nope-nope-nope-nope", [], 401),
            ("", [(b"Authorization", b"Bearer nope-nope-nope-nope")], 401),
            ("?token=alice-token-0123456789", [(b"Origin", b"https://evil.example")], 403),
        ]:
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket_url(url + suffix, extra_headers=headers):
                    pass
            assert info.value.status_code == status
        headers = [(b"Authorization", b"Bearer alice-token-0123456789")]
        async with open_websocket_url(url, extra_headers=headers) as ws:
            assert "connected" in await ws.get_message()
        async with open_client(url + "?token=alice-token-0123456789") as client:
            run = await client.execute(argv=["echo", "authenticated"])
            record = await client.wait_completed(run)
            assert bytes(record.stdout) == b"authenticated\n"
    refusals = served.daemon.metrics.refusals
    assert refusals == {"token": 3, "origin": 1}


async def test_probes_and_drain(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config(shutdown_grace=30.0))
    with trio.fail_after(60):
        assert await http_get(served.port, "/healthz") == (200, "ok\n")
        assert await http_get(served.port, "/readyz") == (200, "ready\n")
        async with open_client(served.url) as client:
            release = served.daemon.config.state_dir + "/release"
            script = f"echo waiting; while [ ! -e {release} ]; do sleep 0.02; done; echo done"
            run = await client.execute(argv=["sh", "-c", script])
            await client.wait_output(run, b"waiting\n")
            async with trio.open_nursery() as drain:
                drain.start_soon(served.daemon.shutdown)
                while not any(n["method"] == "shutdown" for n in client.notifications):
                    await client.receive()
                # Draining: not ready, still alive, and no new runs...
                assert await http_get(served.port, "/readyz") == (503, "draining\n")
                assert (await http_get(served.port, "/healthz"))[0] == 200
                refused = await client.call_error("execute", argv=["true"])
                assert refused.code == -32008
                # ...but a live run may finish on its own within the grace.
                await trio.Path(release).write_text("")
                record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "exited"
            assert bytes(record.stdout) == b"waiting\ndone\n"


async def test_drain_deadline_cancels_what_is_left(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config(shutdown_grace=0.5))
    with trio.fail_after(60):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sleep", "300"])
            async with trio.open_nursery() as drain:
                drain.start_soon(served.daemon.shutdown)
                record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "cancelled"
            assert record.completed["reason"] == "daemon shutdown"


def metric(page: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", page, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


async def test_metrics_after_a_known_workload(nursery: trio.Nursery) -> None:
    served: Served = await start_daemon(nursery, make_config(allowed_commands=("echo", "sleep")))
    with trio.fail_after(60):
        async with open_client(served.url) as client:
            for _ in range(2):
                run = await client.execute(argv=["echo", "hello"])
                await client.wait_completed(run)
            assert (await client.call_error("execute", argv=["ls"])).code == -32001
            sleeper = await client.execute(argv=["sleep", "300"])
            await client.call("control", type="PAUSE", run=sleeper)
            status, page = await http_get(served.port, "/metrics")
            assert status == 200
            assert metric(page, "ccx_connections") == 1
            assert metric(page, 'ccx_runs{state="paused"}') == 1
            await client.call("control", type="RESUME", run=sleeper)
            await client.call("control", type="CANCEL", run=sleeper)
            await client.wait_completed(sleeper)
        status, page = await http_get(served.port, "/metrics")
    assert metric(page, "ccx_runs_started_total") == 3
    assert metric(page, 'ccx_runs_completed_total{outcome="exited"}') == 2
    assert metric(page, 'ccx_runs_completed_total{outcome="cancelled"}') == 1
    assert metric(page, 'ccx_stream_bytes_total{stream="stdout"}') == 12
    assert metric(page, 'ccx_refusals_total{reason="allowed_commands"}') == 1
    assert metric(page, 'ccx_control_seconds_count{type="PAUSE"}') == 1
    assert metric(page, 'ccx_control_seconds_count{type="CANCEL"}') == 1
    assert metric(page, 'ccx_control_seconds_bucket{type="PAUSE",le="+Inf"}') == 1
    assert metric(page, 'ccx_runs{state="running"}') == 0
    assert metric(page, "ccx_draining") == 0
    assert "# TYPE ccx_control_seconds histogram" in page


async def test_logs_name_the_identity_never_the_token() -> None:
    token = "alice-token-0123456789"
    with trio.fail_after(60):
        async with run_daemon(env={"CCX_TOKENS": f"alice:{token}"}) as daemon:
            async with open_client(f"{daemon.url}?token={token}") as client:
                run = await client.execute(argv=["true"])
                await client.wait_completed(run)
            with pytest.raises(ConnectionRejected):
                async with open_websocket_url(f"{daemon.url}?token=wrong-{token}"):
                    pass
            await wait_until(lambda: any('"session.close"' in ln for ln in daemon.stderr_lines))
    logs = "\n".join(daemon.stderr_lines)
    assert token not in logs
    assert '"identity":"alice"' in logs
    assert '"upgrade.refused"' in logs


async def test_a_second_sigterm_skips_the_drain_grace() -> None:
    with trio.fail_after(60):
        async with (
            run_daemon("--shutdown-grace", "300", "--term-grace", "1") as daemon,
            open_client(daemon.url) as client,
        ):
            run = await client.execute(argv=["sleep", "300"])
            daemon.process.send_signal(signal.SIGTERM)
            while not any(n["method"] == "shutdown" for n in client.notifications):
                await client.receive()
            # The run could drain for 300 s; a second signal says: now.
            daemon.process.send_signal(signal.SIGTERM)
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["reason"] == "daemon shutdown"


async def until_closed(client: WireClient) -> int | None:
    """Read until the daemon closes the connection; its close code."""
    for _ in range(100):  # a shutdown notice and a close are all that may come
        try:
            await client.receive()
        except ConnectionClosed as closed:
            return None if closed.reason is None else closed.reason.code
    raise AssertionError("the daemon did not close the connection")


async def test_a_client_that_connects_during_the_drain_is_told_and_closed_like_the_rest(
    nursery: trio.Nursery,
) -> None:
    # One client's run keeps the drain in its grace, then ignores SIGTERM for a while (the
    # tests' term_grace, 1 s), so that clients can arrive in both phases: while runs may finish,
    # and while they are ended and the sessions closed.
    served = await start_daemon(nursery, make_config(shutdown_grace=30.0))
    script = "trap 'echo ended' TERM; echo waiting; while :; do sleep 0.02; done"
    with trio.fail_after(20):
        async with open_client(served.url) as first:
            run = await first.execute(argv=["sh", "-c", script])
            await first.wait_output(run, b"waiting\n")
            async with trio.open_nursery() as drain:
                drain.start_soon(served.daemon.shutdown)
                while not any(n["method"] == "shutdown" for n in first.notifications):
                    await first.receive()
                async with open_client(served.url) as during_grace:
                    while len(during_grace.notifications) < 2:
                        await during_grace.receive()
                    told = [n["method"] for n in during_grace.notifications]
                    assert told == ["connected", "shutdown"]
                    # A second SIGTERM ends the grace; the ladder's SIGTERM is what the trap
                    # says, and the run outlives it until SIGKILL.
                    served.daemon.hurry()
                    await first.wait_output(run, b"ended\n")
                    async with open_client(served.url) as while_ending:
                        assert await until_closed(while_ending) == 1001
                        told = [n["method"] for n in while_ending.notifications]
                        assert told == ["connected", "shutdown"]
                    # MCP has no shutdown notification: it is closed alike.
                    async with open_websocket_url(served.url, subprotocols=[SUBPROTOCOL]) as mcp:
                        with pytest.raises(ConnectionClosed) as closed:
                            await mcp.get_message()
                        assert closed.value.reason is not None
                        assert closed.value.reason.code == 1001
                    assert await until_closed(during_grace) == 1001
                record = await first.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "cancelled"
