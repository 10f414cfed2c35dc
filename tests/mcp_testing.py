"""Helpers for the MCP tests: SDK virtualenvs, a recording proxy, and frame conformance checks.

The official SDKs run in their own virtualenvs under ``.cache/`` (made once, reused), as
subprocesses: the 1.x WebSocket client is asyncio-only, and the daemon is trio.  Between the
SDK and the daemon sits a recording proxy (trio-websocket, subprotocol "mcp"), so every frame
the daemon sends to the SDK is checked by ``check_frames`` whatever the SDK does with it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
SDKS = {"mcp1": "mcp[ws]<2", "mcp2": "mcp>=2"}


def install_once(stamp: Path, what: str, command: str, steps: list[list[str]]) -> None:
    """Run `steps` (subprocess argvs) unless `stamp` says they ran; then write it.

    In CI (CI=true) a failed install fails the test; locally it skips, saying `command`.
    """
    if stamp.exists():
        return
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        for step in steps:
            subprocess.run(
                step, stdin=subprocess.DEVNULL, check=True, timeout=600, capture_output=True
            )
    except (subprocess.SubprocessError, OSError) as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"cannot install {what} ({exc}); run: {command}")
    stamp.write_text("ok\n")


def sdk_python(name: str) -> Path:
    """The python of a virtualenv with the SDK installed (made on first use; see install_once)."""
    venv = CACHE / name
    python = venv / "bin" / "python"
    packages = [SDKS[name]] + (["websockets"] if name == "mcp2" else [])
    command = f"{sys.executable} -m venv {venv} && {python} -m pip install --quiet " + " ".join(
        f"'{package}'" for package in packages
    )
    venv_step = [] if python.exists() else [[sys.executable, "-m", "venv", str(venv)]]
    pip_step = [str(python), "-m", "pip", "install", "--quiet", *packages]
    install_once(venv / ".ccx-ready", "the MCP SDK", command, [*venv_step, pip_step])
    return python


TS_PACKAGE = "@modelcontextprotocol/sdk"
TS_SDK = f"{TS_PACKAGE}@1"
TS_CACHE = CACHE / "mcp-ts"


def ts_sdk_node() -> list[str]:
    """The node command that runs a tests/*.mjs script with the TypeScript SDK installed (in
    .cache/mcp-ts, on first use; a skip or, in CI, a failure when npm cannot install it).

    Node before 22 has its WebSocket (the SDK's WebSocket transport needs it) behind a flag."""
    node, npm = shutil.which("node"), shutil.which("npm")
    command = f"npm install --prefix {TS_CACHE} {TS_SDK}"
    if node is None or npm is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("node and npm are needed for the TypeScript MCP SDK tests")
        pytest.skip(f"node or npm missing; then run: {command}")
    npm_step = [npm, "install", "--prefix", str(TS_CACHE), "--no-audit", "--no-fund", TS_SDK]
    install_once(TS_CACHE / ".ccx-ready", "the TypeScript MCP SDK", command, [npm_step])
    version = subprocess.run(
        [node, "--version"], capture_output=True, check=True, timeout=60
    ).stdout.decode()
    major = int(version.strip().lstrip("v").split(".")[0])
    return [node, *(["--experimental-websocket"] if major < 22 else [])]


async def run_node_script(node: list[str], script: str, *args: str) -> Any:
    """Run a tests/*.mjs script against the TypeScript SDK; return the JSON it prints last."""
    done = await trio.run_process(
        [*node, str(ROOT / "tests" / script), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, "CCX_MCP_TS_SDK": str(TS_CACHE / "node_modules" / TS_PACKAGE)},
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    return orjson.loads(done.stdout.splitlines()[-1])


async def run_script(python: Path, script: str, *args: str) -> Any:
    """Run a tests/ script with an SDK's python; return the JSON it prints.

    The caller bounds it (trio.fail_after): cancelling kills the script."""
    done = await trio.run_process(
        [str(python), str(ROOT / "tests" / script), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    return orjson.loads(done.stdout.splitlines()[-1])


# -- the recording proxy -------------------------------------------------------------------


@attrs.define
class Recording:
    """Every frame through the proxy, in order: ("client"|"server", parsed JSON)."""

    frames: list[tuple[str, Any]] = attrs.field(factory=list)
    subprotocols: list[str | None] = attrs.field(factory=list)

    def from_server(self) -> list[Any]:
        return [message for side, message in self.frames if side == "server"]


async def _pump(
    source: WebSocketConnection, sink: WebSocketConnection, side: str, record: Recording
) -> None:
    try:
        while True:
            text = await source.get_message()
            assert isinstance(text, str), f"{side} sent a binary frame"
            record.frames.append((side, orjson.loads(text)))
            await sink.send_message(text)
    except ConnectionClosed:
        pass
    finally:
        with trio.move_on_after(5, shield=True):
            await sink.aclose()


@asynccontextmanager
async def recording_proxy(upstream: str) -> AsyncIterator[tuple[str, Recording]]:
    """A WebSocket proxy to `upstream` (subprotocol "mcp") recording every frame."""
    record = Recording()

    async def handler(request: WebSocketRequest) -> None:
        client = await request.accept(subprotocol="mcp")
        async with open_websocket_url(upstream, subprotocols=["mcp"]) as server:
            record.subprotocols.append(server.subprotocol)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, server, "client", record)
                nursery.start_soon(_pump, server, client, "server", record)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        port = server.port
        yield f"ws://127.0.0.1:{port}/", record
        nursery.cancel_scope.cancel()


# -- a raw client ---------------------------------------------------------------------------


class McpClient:
    """A raw MCP client: every frame both ways goes into `record`."""

    def __init__(self, ws: WebSocketConnection, record: Recording) -> None:
        self.ws = ws
        self.record = record
        self.ids = itertools.count(1)
        self.responses: dict[Any, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        message = {"jsonrpc": "2.0", **message}
        self.record.frames.append(("client", message))
        await self.ws.send_message(orjson.dumps(message).decode())

    async def receive(self) -> dict[str, Any]:
        text = await self.ws.get_message()
        assert isinstance(text, str)
        message: dict[str, Any] = orjson.loads(text)
        self.record.frames.append(("server", message))
        if "method" in message:
            self.notifications.append(message)
        else:
            self.responses[message["id"]] = message
        return message

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.send({"id": msg_id, "method": method, "params": params or {}})
        while msg_id not in self.responses:
            await self.receive()
        return self.responses[msg_id]

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        response = await self.request(method, params)
        assert "result" in response, response
        return response["result"]


@asynccontextmanager
async def mcp_client(
    url: str, record: Recording, *, initialize: bool = True
) -> AsyncIterator[McpClient]:
    async with open_websocket_url(url, subprotocols=["mcp"]) as ws:
        assert ws.subprotocol == "mcp"
        client = McpClient(ws, record)
        if initialize:
            init = await client.result("initialize", {"protocolVersion": "2025-06-18"})
            assert init["protocolVersion"] == "2025-06-18"
            await client.send({"method": "notifications/initialized"})
        yield client


# -- conformance ---------------------------------------------------------------------------


def check_frames(record: Recording) -> dict[str, int]:
    """Check every frame the server sent against what the client sent before it.

    jsonrpc "2.0"; a response has exactly one of result/error and answers an id the client
    sent, once; the server sends no requests; progress only for tokens the client issued,
    strictly increasing, never after the response to their request.
    """
    sent_ids: set[Any] = set()
    answered: set[Any] = set()
    token_of: dict[Any, Any] = {}  # progress token -> request id
    last_progress: dict[Any, float] = {}
    counts = {"responses": 0, "progress": 0, "notifications": 0}
    for side, message in record.frames:
        assert isinstance(message, dict), f"{side} sent a batch: {message}"
        assert message.get("jsonrpc") == "2.0", message
        if side == "client":
            if "method" in message and "id" in message:
                sent_ids.add(message["id"])
                answered.discard(message["id"])
                token = (message.get("params") or {}).get("_meta", {}).get("progressToken")
                if token is not None:
                    token_of[token] = message["id"]
                    last_progress.pop(token, None)
            continue
        if "method" in message:
            assert "id" not in message, f"the server sent a request: {message}"
            counts["notifications"] += 1
            if message["method"] == "notifications/progress":
                params = message["params"]
                token = params["progressToken"]
                assert token in token_of, f"progress for a token never issued: {message}"
                assert token_of[token] not in answered, f"progress after the response: {message}"
                assert params["progress"] > last_progress.get(token, float("-inf")), message
                last_progress[token] = params["progress"]
                counts["progress"] += 1
            continue
        assert ("result" in message) != ("error" in message), message
        msg_id = message["id"]
        if msg_id is not None:
            assert msg_id in sent_ids, f"response to an id never sent: {message}"
            assert msg_id not in answered, f"second response to {msg_id}: {message}"
            answered.add(msg_id)
        counts["responses"] += 1
    return counts
