"""Helpers shared by the end-to-end tests: a plain JSON-RPC WebSocket client and /proc checks.

The client is deliberately raw — it sees exactly the frames the server sends — and checks the
protocol's invariants on every frame it receives, so that every end-to-end test also checks
them: each response answers an id we sent, once; run events have contiguous sequence numbers
from 1; nothing about a run follows its ``process.completed``.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import orjson
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.daemon.daemon import Daemon
from cc_executor.executor.daemon.serve import serve
from cc_executor.protocol.binary import BINARY_SUBPROTOCOL, decode_binary_output
from cc_executor.protocol.methods import RUN_EVENTS  # the session notices are run events too
from cc_executor.supervision.config import SupervisionConfig


@attrs.frozen
class Served:
    """A daemon served in-process by the test's nursery."""

    daemon: Daemon
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


# Where test daemons keep their state: the running test's tmp_path (tests/conftest.py sets
# it), so nothing is left behind in /tmp.
STATE_ROOT: str | None = None


def new_state_dir() -> str:
    """A fresh state directory under the running test's tmp_path."""
    return tempfile.mkdtemp(prefix="ccx-state-", dir=STATE_ROOT)


def make_config(**changes: Any) -> ServerConfig:
    """Loopback, port 0, and a short cancel grace so ladder tests stay quick."""
    base = ServerConfig(
        host="127.0.0.1",
        port=0,
        supervision=SupervisionConfig(term_grace=1.0, kill_wait=2.0),
        # Never the user's state directory: its durable runs would show up in `list`.
        state_dir=new_state_dir(),
    )
    return attrs.evolve(base, **changes)


async def start_daemon(nursery: trio.Nursery, config: ServerConfig) -> Served:
    """Serve a daemon in ``nursery``; cancelling the nursery stops it."""
    daemon, listening = await nursery.start(serve, config)
    return Served(daemon, listening.port)


def unused_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago, and nobody took it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unused_url() -> str:
    """A daemon URL that nothing answers: connecting to it is refused."""
    return f"ws://127.0.0.1:{unused_port()}/"


class RpcError(Exception):
    """An error response, as the client saw it."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['code']}: {error['message']}")
        self.code: int = error["code"]
        self.message: str = error["message"]
        self.data: Any = error.get("data")


@attrs.define
class RunRecord:
    """Everything one run has sent so far."""

    run: str
    stdout: bytearray = attrs.field(factory=bytearray)
    stderr: bytearray = attrs.field(factory=bytearray)
    events: list[dict[str, Any]] = attrs.field(factory=list)
    completed: dict[str, Any] | None = None
    last_seq: int = 0


class WireClient:
    """A JSON-RPC client over one WebSocket that records and checks what it receives."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        # Output comes as binary frames (protocol/binary.py) when the daemon took the
        # subprotocol; a binary frame on any other connection fails the test.
        self.binary = ws.subprotocol == BINARY_SUBPROTOCOL
        self.binary_frames = 0
        self._ids = itertools.count(1)
        self.sent_ids: set[int | str] = set()
        self.responses: dict[int | str | None, list[dict[str, Any]]] = {}
        self.runs: dict[str, RunRecord] = {}
        self.notifications: list[dict[str, Any]] = []
        self.frames = 0

    # -- receiving -------------------------------------------------------------------------

    async def receive(self) -> Any:
        """The next frame, parsed and checked."""
        text = await self.ws.get_message()
        if isinstance(text, bytes):
            assert self.binary, "the server sent a binary frame"
            output = decode_binary_output(text)
            self.frames += 1
            self.binary_frames += 1
            # As a text frame would have it, the bytes as they are under "raw".
            params: dict[str, Any] = {"run": output.run, "seq": output.seq}
            params.update(type=output.stream, raw=output.data)
            binary = {"jsonrpc": "2.0", "method": "process.output", "params": params}
            self._absorb(binary)
            return binary
        message = orjson.loads(text)
        self.frames += 1
        for item in message if isinstance(message, list) else [message]:
            self._absorb(item)
        return message

    def _absorb(self, message: dict[str, Any]) -> None:
        assert message.get("jsonrpc") == "2.0", message
        if "method" in message:
            assert "id" not in message, f"server sent a request: {message}"
            self.notifications.append(message)
            if message["method"] in RUN_EVENTS:
                self._run_event(message["method"], message["params"])
            return
        assert ("result" in message) != ("error" in message), message
        msg_id = message["id"]
        if msg_id is not None:
            assert msg_id in self.sent_ids, f"response to an id never sent: {message}"
            assert msg_id not in self.responses, f"second response to id {msg_id}: {message}"
        self.responses.setdefault(msg_id, []).append(message)

    def _run_event(self, method: str, params: dict[str, Any]) -> None:
        record = self.runs.setdefault(params["run"], RunRecord(params["run"]))
        assert record.completed is None, f"{method} after process.completed: {params}"
        assert params["seq"] == record.last_seq + 1, (
            f"seq {params['seq']} after {record.last_seq} in run {record.run}"
        )
        record.last_seq = params["seq"]
        record.events.append({"method": method, **params})
        if method == "process.output":
            raw = params.get("raw")
            if raw is None:
                data = params["data"]
                raw = (
                    base64.b64decode(data)
                    if params.get("encoding") == "base64"
                    else data.encode("utf-8")
                )
            (record.stdout if params["type"] == "stdout" else record.stderr).extend(raw)
        elif method == "process.completed":
            record.completed = params

    # -- sending ---------------------------------------------------------------------------

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send_message(text)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its response message (error or result)."""
        msg_id = next(self._ids)
        self.sent_ids.add(msg_id)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.ws.send_message(orjson.dumps(message).decode())
        return await self.response(msg_id)

    async def response(self, msg_id: int | str) -> dict[str, Any]:
        while msg_id not in self.responses:
            await self.receive()
        return self.responses[msg_id][0]

    async def call(self, method: str, **params: Any) -> Any:
        """Send a request; return its result or raise RpcError."""
        response = await self.request(method, params)
        if "error" in response:
            raise RpcError(response["error"])
        return response["result"]

    async def call_error(self, method: str, **params: Any) -> RpcError:
        """Send a request that must fail; return its error."""
        response = await self.request(method, params)
        assert "error" in response, f"{method} {params} should have failed: {response}"
        return RpcError(response["error"])

    async def execute(self, **params: Any) -> str:
        """Start a run and return its id."""
        result = await self.call("execute", **params)
        assert result["status"] == "started"
        return str(result["run"])

    async def wait_completed(self, run: str) -> RunRecord:
        """Receive until the run's ``process.completed`` has arrived."""
        while run not in self.runs or self.runs[run].completed is None:
            await self.receive()
        return self.runs[run]

    async def wait_output(self, run: str, needle: bytes) -> RunRecord:
        """Receive until the run's stdout contains ``needle``."""
        while run not in self.runs or needle not in self.runs[run].stdout:
            await self.receive()
        return self.runs[run]


@asynccontextmanager
async def open_client(
    url: str, *, max_message_size: int = 1024 * 1024, binary: bool = False
) -> AsyncIterator[WireClient]:
    """Connect, check the ``connected`` greeting, and yield a client (with `binary`, one
    that offers binary output frames)."""
    subprotocols = [BINARY_SUBPROTOCOL] if binary else None
    async with open_websocket_url(
        url, max_message_size=max_message_size, subprotocols=subprotocols
    ) as ws:
        client = WireClient(ws)
        greeting = await client.receive()
        assert greeting["method"] == "connected", greeting
        yield client


# -- processes ---------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, sid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def all_stopped(pid: int) -> bool:
    """Every thread of the process is stopped (SIGSTOP takes effect a moment after kill)."""
    tasks = os.listdir(f"/proc/{pid}/task")
    return all((proc_stat(int(task)) or ("?",))[0] == "T" for task in tasks)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def zombie_children(parent: int) -> list[int]:
    """Zombie processes whose parent is ``parent``."""
    zombies = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[0] == "Z" and stat[1] == parent:
                zombies.append(int(name))
    return zombies


def pids_in_file(path: str) -> list[int]:
    """Pids a test tree wrote to a file, one per line."""
    with open(path) as f:
        return [int(line) for line in f.read().split()]


async def wait_until(predicate: Any, bound: float = 10.0, interval: float = 0.01) -> None:
    """Poll a condition only /proc can tell (a process gone, a file written), with a bound."""
    with trio.fail_after(bound):
        while not predicate():  # noqa: ASYNC110 - no event exists for what /proc reports
            await trio.sleep(interval)


# -- the daemon as a real process --------------------------------------------------------


@attrs.define
class DaemonProcess:
    process: trio.Process
    port: int
    stderr_lines: list[str]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def wait_logged(self, event: str) -> None:
        """Until a line of `event` was read from the daemon's stderr (lines are written by its
        writer thread in order, some time after they are logged)."""
        await wait_until(lambda: any(f'"{event}"' in line for line in self.stderr_lines))

    def rss_kib(self) -> int:
        return self._status_kib("VmRSS")

    def peak_rss_kib(self) -> int:
        """The most memory the daemon has held at once so far (its high-water mark)."""
        return self._status_kib("VmHWM")

    def _status_kib(self, field: str) -> int:
        with open(f"/proc/{self.process.pid}/status") as f:
            match = re.search(rf"{field}:\s+(\d+) kB", f.read())
        assert match is not None
        return int(match.group(1))


async def stop_process(process: trio.Process) -> None:
    """SIGTERM a daemon process and wait for it (shielded, bounded); SIGKILL if it lingers."""
    with trio.move_on_after(15, shield=True):
        if process.returncode is None:
            process.terminate()
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


@asynccontextmanager
async def run_daemon(
    *args: str,
    env: dict[str, str] | None = None,
    python: Sequence[str] = (),
    wrapper: Sequence[str] = (),
) -> AsyncIterator[DaemonProcess]:
    """Start ``python -m cc_executor.executor serve --port 0 ...`` and learn its port.

    `python`: options for the interpreter before ``-m`` (``-c CODE`` to run something first);
    `wrapper`: a command that execs or forks the rest (``unshare ...``): the process is its."""
    # SIGTERM ends live runs at once unless a test asks for a drain grace.
    grace = () if "--shutdown-grace" in args else ("--shutdown-grace", "0")
    serve = ["-m", "cc_executor.executor", "serve", "--port", "0", *grace, *args]
    command = [*wrapper, sys.executable, *python, *serve]
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={
                **os.environ,
                # Never the user's state directory (--state-dir in `args` overrides this).
                "CCX_STATE_DIR": new_state_dir(),
                **(env or {}),
            },
        )
        assert process.stderr is not None
        lines: list[str] = []
        port_known = trio.Event()
        found: list[int] = []

        async def read_logs() -> None:
            assert process.stderr is not None
            buffer = b""
            async for chunk in process.stderr:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    lines.append(line.decode(errors="replace"))
                    if b'"daemon.listening"' in line:
                        found.append(orjson.loads(line)["ports"][0])
                        port_known.set()

        nursery.start_soon(read_logs)
        try:
            with trio.fail_after(30):
                await port_known.wait()
            yield DaemonProcess(process, found[0], lines)
        finally:
            await stop_process(process)
            nursery.cancel_scope.cancel()
