"""Every way of failing to reach a daemon is one line on stderr, saying what to do, and an exit
status of its own (executor/client/exits.py); nothing on stdout, no traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
from functools import partial

import pytest
import trio
from ccx_testing import (
    Served,
    all_stopped,
    make_config,
    run_daemon,
    start_daemon,
    unused_url,
    wait_until,
)
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from cc_executor.executor.client import DaemonUnavailable, open_connection
from cc_executor.executor.client.config import DEFAULT_URL
from cc_executor.executor.client.exits import ExitStatus
from cc_executor.executor.client.failures import connect_failure
from cc_executor.executor.client.parsers import Target
from cc_executor.executor.transport.frontdoor import Identity

TIMEOUT = 30
TOKEN = "alice-token-0123456789"


async def ccx(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ccx; return its status and its one line of stderr (asserting there is one)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("CCX_URL", "CCX_TOKEN")}
    with trio.fail_after(TIMEOUT):
        done: subprocess.CompletedProcess[bytes] = await trio.run_process(
            [sys.executable, "-m", "cc_executor.executor", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**environ, **(env or {})},
        )
    text = done.stderr.decode()
    assert done.stdout == b""
    assert text.count("\n") == 1, text
    assert text.endswith("\n"), text
    assert text.startswith("ccx: "), text
    return done.returncode, text.rstrip("\n")


@pytest.fixture
async def guarded(nursery: trio.Nursery) -> Served:
    return await start_daemon(nursery, make_config(tokens={TOKEN: Identity("alice")}))


async def test_no_daemon(nursery: trio.Nursery) -> None:
    # "start one with: ccx serve" started one on 8003, not where the URL points.
    url = unused_url()
    port = urllib.parse.urlsplit(url).port
    status, line = await ccx("ps", "--url", url)
    assert status == ExitStatus.NO_DAEMON
    assert line == (
        f"ccx: no cc-executor daemon at {url} (connection refused) — start one with: "
        f"ccx serve --port {port}"
    )


def test_no_daemon_at_the_default_url_says_how_to_name_another() -> None:
    # The words alone: a test cannot count on nothing listening on 8003. One started with
    # --port 9000 in another terminal was answered "start one with: ccx serve".
    failure = connect_failure(
        DaemonUnavailable(DEFAULT_URL, "connection refused"), Target(DEFAULT_URL, None)
    )
    assert failure.text == (
        f"ccx: no cc-executor daemon at {DEFAULT_URL} (connection refused) — start one with: "
        "ccx serve (for one on another port or host: --url ws://HOST:PORT/ or CCX_URL)"
    )
    remote = "ws://build.example:9000/"
    failure = connect_failure(
        DaemonUnavailable(remote, "connection refused"), Target(remote, None, url_from_env=True)
    )
    assert failure.text.endswith(
        "— check that a daemon runs on build.example (ccx serve --port 9000 there), and the URL"
    )


async def test_missing_token_passes_the_refusal_on(guarded: Served) -> None:
    status, line = await ccx("ps", "--url", guarded.url)
    assert status == ExitStatus.NOT_ALLOWED
    assert "a valid token is required" in line  # the daemon's own words
    assert line.endswith("pass --token TOKEN or set CCX_TOKEN")


async def test_wrong_token_passes_the_refusal_on(guarded: Served) -> None:
    status, line = await ccx("--url", guarded.url, "ps", env={"CCX_TOKEN": "not-the-token"})
    assert status == ExitStatus.NOT_ALLOWED
    assert "refused the token: a valid token is required" in line
    assert line.endswith("check --token / CCX_TOKEN")


async def test_url_without_a_scheme(served: Served) -> None:
    bare = served.url.removeprefix("ws://")
    status, line = await ccx("ps", "--url", bare)
    assert status == ExitStatus.BAD_URL
    assert (
        line
        == f"ccx: {bare!r} is not a daemon URL: it must start with ws:// (or wss://) — e.g. ws://127.0.0.1:8003/"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ws://[::1/", "its host is not a name or an address ([...] holds IPv6)"),
        ("ws://[zz]/", "its host is not a name or an address ([...] holds IPv6)"),
        ("ws://a..b/", "its host is not a valid name (an empty or too long label)"),
        (f"ws://{'a' * 64}.example/", "its host is not a valid name (an empty or too long label)"),
        # a port beyond 65535 was "not a number"; port 0 went on to a refused connection
        ("ws://127.0.0.1:99999/", "its port is not a number from 1 to 65535"),
        ("ws://127.0.0.1:0/", "its port is not a number from 1 to 65535"),
        ("ws://127.0.0.1:x/", "its port is not a number from 1 to 65535"),
    ],
)
async def test_url_whose_host_cannot_be_parsed(url: str, reason: str) -> None:
    # Each was a traceback (urlsplit's or the IDNA codec's ValueError) and exit status 1.
    status, line = await ccx("ps", "--url", url)
    assert status == ExitStatus.BAD_URL
    assert line == f"ccx: {url!r} is not a daemon URL: {reason} — e.g. ws://127.0.0.1:8003/"


async def test_host_that_cannot_be_looked_up() -> None:
    # The resolver's error number was read as errno's: "(unknown error -2)", and the advice
    # was to start a daemon.  (.invalid never resolves: RFC 2606.)
    url = "ws://no-such-host.invalid:8003/"
    status, line = await ccx("ps", "--url", url)
    assert status == ExitStatus.NO_DAEMON
    assert line.startswith(f"ccx: no cc-executor daemon at {url} (cannot look up its host: ")
    assert line.endswith(") — check the URL's host")
    assert "unknown error" not in line


async def test_empty_ccx_url() -> None:
    status, line = await ccx("ps", env={"CCX_URL": ""})
    assert status == ExitStatus.EMPTY_URL
    assert line.startswith("ccx: CCX_URL is set but empty — unset it")


async def test_wrong_path_is_the_daemons_404(served: Served) -> None:
    status, line = await ccx("status", "--url", served.url + "nope")
    assert status == ExitStatus.WRONG_PATH
    assert "no WebSocket endpoint at /nope" in line  # the daemon's own words


async def test_a_web_server_is_not_a_daemon(nursery: trio.Nursery) -> None:
    async def web_page(stream: trio.SocketStream) -> None:
        page = b"<html><body>It works!</body></html>"
        await stream.receive_some(65536)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(page), page)
        )
        await stream.aclose()

    (listener,) = await nursery.start(partial(trio.serve_tcp, web_page, 0, host="127.0.0.1"))
    url = f"ws://127.0.0.1:{listener.socket.getsockname()[1]}/"
    status, line = await ccx("run", "--url", url, "--", "true")
    assert status == ExitStatus.NOT_A_DAEMON
    assert line == (
        f"ccx: {url} is not a cc-executor daemon (it answered HTTP 200 (text/html)) — "
        "check the host and port"
    )


async def test_another_websocket_server_is_not_a_daemon(nursery: trio.Nursery) -> None:
    async def chatty(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):  # the client leaves
            await ws.send_message("hello, whoever you are")
            await ws.get_message()

    server = await nursery.start(serve_websocket, chatty, "127.0.0.1", 0, None)
    url = f"ws://127.0.0.1:{server.port}/"
    status, line = await ccx("ps", "--url", url)
    assert status == ExitStatus.NOT_A_DAEMON
    assert line.startswith(f"ccx: {url} is not a cc-executor daemon (not JSON-RPC: ")


async def test_connection_limit_is_the_daemons_refusal(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config(max_connections=1))
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url):
            status, line = await ccx("ps", "--url", served.url)
    assert status == ExitStatus.BUSY
    assert line == (
        f"ccx: the daemon at {served.url} refused the session: connection limit reached "
        "(max_connections=1) — try again later"
    )


async def test_a_connect_that_times_out_is_not_said_to_find_no_daemon() -> None:
    """Nothing takes the TCP connection within the connect timeout: a listener whose accept
    queue is full (backlog 0, one connection queued and never accepted), so the kernel drops
    ccx's SYNs, as a network that drops them or an overloaded daemon would. "No daemon ...
    start one" would be wrong there: something may hold the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    queued = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with listener, queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued.connect(listener.getsockname())
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
        status, line = await ccx("ps", "--url", url)
    assert status == ExitStatus.NO_DAEMON
    assert line == (
        f"ccx: nothing at {url} answered in time (timed out connecting) — a daemon there may be "
        "stopped or overloaded; if none runs, start one with: ccx serve"
    )


async def test_a_stopped_daemon_is_said_to_be_not_answering() -> None:
    """A daemon stopped with SIGSTOP: the kernel still takes the TCP connection, nobody
    answers the upgrade. ccx said "no cc-executor daemon ... — start one with: ccx serve",
    which cannot work (the port is the stopped one's). Now each command says, within its
    connect timeout, that the daemon there is not answering, and how to look into it."""
    async with run_daemon() as daemon:
        url = ["--url", daemon.url]
        async with open_connection(daemon.url) as conn:
            run = await conn.execute(["sleep", "60"], durable=True)
            await run.detach()
        commands = [["ps"], ["run", "--", "true"], ["attach", run.id], ["logs", run.id]]
        results: dict[str, tuple[int, str]] = {}

        async def one(words: list[str]) -> None:
            results[words[0]] = await ccx(*url, *words)

        daemon.process.send_signal(signal.SIGSTOP)
        try:
            await wait_until(lambda: all_stopped(daemon.process.pid))
            async with trio.open_nursery() as nursery:
                for words in commands:
                    nursery.start_soon(one, words)
        finally:
            daemon.process.send_signal(signal.SIGCONT)
        async with open_connection(daemon.url) as conn:  # answering again once resumed
            await (await conn.attach(run.id)).cancel()
    for name, (status, line) in results.items():
        assert status == ExitStatus.NO_DAEMON, (name, line)
        assert line == (
            f"ccx: the daemon at {daemon.url} is not answering (it took the connection but "
            "did not answer within 5 s) — it may be stopped (kill -CONT resumes it) or too "
            "busy; check its process"
        ), (name, line)


@pytest.mark.parametrize("words", [["ps"], ["run", "--", "true"]])
async def test_ctrl_c_while_connecting_exits_130_without_a_traceback(words: list[str]) -> None:
    """Ctrl-C while ccx waits for a daemon that took the connection and says nothing (the
    moment one presses it): a Python traceback (KeyboardInterrupt). Now ccx exits 130 and
    says nothing, as an interrupted tool does."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
        with trio.fail_after(TIMEOUT):
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "cc_executor.executor", "--url", url, *words],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                await trio.lowlevel.wait_readable(listener)  # ccx is connecting now
                accepted, _ = listener.accept()
                process.send_signal(signal.SIGINT)
                assert process.stdout is not None
                assert process.stderr is not None
                out = b"".join([chunk async for chunk in process.stdout])
                err = b"".join([chunk async for chunk in process.stderr])
                status = await process.wait()
                accepted.close()
            finally:
                process.kill()
    assert (status, out, err) == (130, b"", b"")
