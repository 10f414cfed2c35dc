"""The original CC-Executor's clients, frame for frame, on `/ws/mcp`; and `/` unchanged.

Each test replays what a client of grahama1970/cc_executor (at 3429fb5) does — its stress
tests, its examples, its health check: `json.loads` every frame, take `process.output`'s
`data` as one line, send a control and read the next frame as its reply, probe `GET /health`.
They read frames with a bare WebSocket, as those clients did, not with the strict test client
(which wants one seq per frame: the original's framing gives the lines of one event its seq).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from ccx_testing import Served, make_config, start_daemon
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from cc_executor.protocol.codec import encode_output
from cc_executor.supervision.config import SupervisionConfig

PY = sys.executable

# A stub `claude -p --output-format stream-json`: every line of a turn in one write(), so the
# lines reach the daemon together (the case that broke clients parsing each frame's data).
STREAM_JSON = (
    "import json, sys\n"
    "events = [{'type': 'system', 'subtype': 'init', 'session_id': 's'}]\n"
    "events += [{'type': 'assistant', 'message': {'content': [{'type': 'text', 'text': f'{i}'}]}}"
    " for i in range(300)]\n"
    "events.append({'type': 'result', 'subtype': 'success', 'result': 'done'})\n"
    "sys.stdout.write(''.join(json.dumps(e) + '\\n' for e in events))\n"
)


class OriginalClient:
    """A client as the original's were written: every frame is JSON, read in order."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.next_id = 0

    async def send(self, method: str, params: dict[str, Any], id_: Any = None) -> Any:
        if id_ is None:
            self.next_id += 1
            id_ = self.next_id
        await self.ws.send_message(
            json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": id_})
        )
        return id_

    async def recv(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.ws.get_message())
        return frame

    async def until(self, method: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every frame before the first `method` notification, and that one."""
        before = []
        while (frame := await self.recv()).get("method") != method:
            before.append(frame)
        return before, frame


@asynccontextmanager
async def original_client(port: int, path: str = "/ws/mcp") -> AsyncIterator[OriginalClient]:
    async with open_websocket_url(f"ws://127.0.0.1:{port}{path}") as ws:
        client = OriginalClient(ws)
        connected = await client.recv()
        assert connected["method"] == "connected"
        yield client


def outputs(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f["params"] for f in frames if f.get("method") == "process.output"]


# -- output: one line per frame ------------------------------------------------------------


def stub_claude(tmp_path: Path) -> str:
    """The command line that runs the stream-json stub, as an original client would send it."""
    script = tmp_path / "claude_stub.py"
    script.write_text(STREAM_JSON)
    return f"{PY} {script}"


async def test_lines_written_at_once_arrive_one_per_frame_and_each_parses(
    served: Served, tmp_path: Path
) -> None:
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            await client.send("execute", {"command": stub_claude(tmp_path)})
            reply = await client.recv()
            assert reply["result"]["status"] == "started"
            frames, completed = await client.until("process.completed")
    lines = outputs(frames)
    assert len(lines) == 302
    events = [json.loads(params["data"]) for params in lines]  # each frame's data alone
    assert [e["type"] for e in events[:2]] == ["system", "assistant"]
    assert events[-1] == {"type": "result", "subtype": "success", "result": "done"}
    for params in lines:
        assert params["data"].count("\n") == 1
        assert params["data"].endswith("\n")
        assert params["truncated"] is False
        assert params["type"] == "stdout"
    # Lines that arrived together are one event of the run: they share its seq.
    seqs = [params["seq"] for params in lines]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) < len(seqs)
    assert completed["params"]["seq"] == seqs[-1] + 1
    assert completed["params"]["exit_code"] == 0


async def test_a_line_longer_than_a_chunk_is_split_at_the_chunk_size(served: Served) -> None:
    chunk = served.daemon.config.supervision.max_chunk
    size = 2 * chunk + 1000
    code = f"import sys; sys.stdout.write('é' * {size // 2} + '\\n' + 'tail\\n')"
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            await client.send("execute", {"argv": [PY, "-c", code]})
            frames, _ = await client.until("process.completed")
    pieces = [params["data"] for params in outputs(frames)]
    assert "".join(pieces) == "é" * (size // 2) + "\ntail\n"
    assert pieces[-1] == "tail\n"
    long_pieces = pieces[:-1]
    assert len(long_pieces) == 3
    assert all(len(piece.encode()) <= chunk for piece in long_pieces)
    assert [piece.endswith("\n") for piece in long_pieces] == [False, False, True]


async def test_stderr_lines_and_non_utf8_lines_each_have_their_frame(served: Served) -> None:
    code = (
        "import os, sys; sys.stderr.write('e1\\ne2\\n'); sys.stderr.flush();"
        "os.write(1, b'text\\n\\xff\\xfe\\nmore\\n')"
    )
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            await client.send("execute", {"argv": [PY, "-c", code]})
            frames, _ = await client.until("process.completed")
    lines = outputs(frames)
    stderr = [p["data"] for p in lines if p["type"] == "stderr"]
    stdout = [(p["data"], p.get("encoding")) for p in lines if p["type"] == "stdout"]
    assert stderr == ["e1\n", "e2\n"]
    assert stdout == [("text\n", None), ("//4K", "base64"), ("more\n", None)]


# -- controls: the reply is the very next frame ----------------------------------------------


@pytest.mark.parametrize("path", ["/ws/mcp", "/"])
async def test_forty_pause_resume_each_answered_by_the_next_frame_then_cancel(
    served: Served, path: str
) -> None:
    """The reply before the event it caused holds on every path; only /ws/mcp adds
    process.canceled before the completion."""
    with trio.fail_after(60):
        async with original_client(served.port, path) as client:
            await client.send("execute", {"command": "sh -c 'echo ready; exec sleep 60'"})
            started = await client.recv()
            pid = started["result"]["pid"]
            await client.until("process.output")
            for i in range(40):
                action, status = ("PAUSE", "paused") if i % 2 == 0 else ("RESUME", "resumed")
                id_ = await client.send("control", {"type": action})
                reply = await client.recv()
                assert reply.get("id") == id_, (i, reply)
                assert reply["result"]["status"] == status
                event = await client.recv()
                assert event["method"] == f"process.{status}"
                assert event["params"]["status"] == status
                assert event["params"]["pid"] == pid
            id_ = await client.send("control", {"type": "CANCEL"})
            reply = await client.recv()
            *canceled, completed = [await client.recv() for _ in range(1 if path == "/" else 2)]
    assert reply["id"] == id_
    assert reply["result"]["status"] == "canceled"
    if path == "/":
        assert canceled == []
    else:
        (announced,) = canceled
        assert announced["method"] == "process.canceled"
        assert announced["params"] == {
            "run": reply["result"]["run"],
            "status": "canceled",
            "pid": pid,
            "pgid": pid,
            "exit_code": None,
            "error": None,
        }
    assert completed["method"] == "process.completed"
    assert completed["params"]["status"] == "canceled"
    assert completed["params"]["outcome"] == "cancelled"


async def test_status_notifications_carry_the_originals_exit_code_and_error_keys(
    served: Served,
) -> None:
    """The original sent every status notification as its StatusUpdate model, every field
    present: `exit_code` (null but in the completion) and `error` (null) included."""
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            await client.send("execute", {"command": "sh -c 'echo ready; exec sleep 60'"})
            await client.recv()  # the reply
            frames, _ = await client.until("process.output")
            for kind in ("PAUSE", "RESUME", "CANCEL"):
                await client.send("control", {"type": kind})
                assert "result" in await client.recv()  # the reply
                if kind != "CANCEL":
                    frames.append(await client.recv())
            more, completed = await client.until("process.completed")
    statuses = [f["params"] for f in [*frames, *more, completed]]
    assert [p["status"] for p in statuses] == [
        "started",
        "paused",
        "resumed",
        "canceled",
        "canceled",
    ]
    for params in statuses[:-1]:
        assert (params["exit_code"], params["error"]) == (None, None), params
    assert (completed["params"]["exit_code"], completed["params"]["error"]) == (-15, None)


async def test_the_orchestrators_cancel_waits_for_process_completed(served: Served) -> None:
    """websocket_orchestrator._cancel_execution: send CANCEL, read until process.completed."""
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            await client.send("execute", {"command": "sh -c 'echo working; exec sleep 60'"})
            await client.until("process.output")
            await client.send("control", {"type": "CANCEL"}, id_=99)
            frames, completed = await client.until("process.completed")
    assert [f.get("method") or f["id"] for f in frames] == [99, "process.canceled"]
    assert completed["params"]["exit_code"] == -15


async def test_a_cancel_that_joins_a_run_ending_by_itself_is_followed_by_canceled(
    nursery: trio.Nursery,
) -> None:
    """The root exits on its own, leaving a process that reports SIGTERM and lives on; while
    the ladder ends it, a CANCEL joins the ladder and is answered "canceled".  The original's
    clients read `process.canceled` after that reply: it comes, before the completion (which
    says how the run really ended: it exited)."""
    grace = SupervisionConfig(term_grace=4.0, kill_wait=2.0)
    served = await start_daemon(nursery, make_config(supervision=grace))
    leftover = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('termed', flush=True))\n"
        "os.write(int(sys.argv[1]), b'x')\n"
        "time.sleep(60)\n"
    )
    # The root exits once the leftover's handler is in place (it says so on a pipe of theirs).
    root = (
        "import os, subprocess, sys\n"
        "r, w = os.pipe()\n"
        f"subprocess.Popen([sys.executable, '-c', {leftover!r}, str(w)], pass_fds=[w])\n"
        "os.read(r, 1)\n"
    )
    with trio.fail_after(30):
        async with original_client(served.port) as client:
            await client.send("execute", {"argv": [PY, "-c", root]})
            assert (await client.recv())["result"]["status"] == "started"
            while (frame := await client.recv()).get("params", {}).get("data") != "termed\n":
                assert frame.get("method") != "process.completed", frame
            # The ladder is ending the leftover (it said so): the run is ending by itself.
            id_ = await client.send("control", {"type": "CANCEL"})
            reply = await client.recv()
            after, completed = await client.until("process.completed")
    assert reply["id"] == id_
    assert reply["result"]["status"] == "canceled"
    assert [frame["method"] for frame in after] == ["process.canceled"]
    assert after[0]["params"]["status"] == "canceled"
    assert completed["params"]["outcome"] == "exited"


# -- lenient params --------------------------------------------------------------------------


async def test_the_health_checks_execute_with_id_and_path_runs(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/check_websocket_health.py's request, as it sends it."""
    request = {
        "jsonrpc": "2.0",
        "method": "execute",
        "params": {"id": "health_check", "command": "echo 'WebSocket test'", "path": "/tmp"},
        "id": "test_1",
    }
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            await client.ws.send_message(json.dumps(request))
            response = await client.recv()
            frames, completed = await client.until("process.completed")
    assert response["id"] == "test_1"
    assert response["result"]["status"] == "started"
    assert [p["data"] for p in outputs(frames)] == ["WebSocket test\n"]
    assert completed["params"]["exit_code"] == 0
    logged = capsys.readouterr().out
    assert "request.params_ignored" in logged
    assert "'id', 'path'" in logged


async def test_control_with_an_id_param_works(served: Served) -> None:
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            await client.send("execute", {"command": "sleep 60"})
            await client.until("process.started")
            await client.send("control", {"type": "PAUSE", "id": 7})
            assert (await client.recv())["result"]["status"] == "paused"


# -- the original's error codes --------------------------------------------------------------


async def test_the_original_error_codes(nursery: trio.Nursery) -> None:
    served = await start_daemon(
        nursery, make_config(allowed_commands=("echo", "sleep"), max_runs_per_connection=1)
    )

    error = client_error
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            assert (await error(client, '{"jsonrpc":'))["code"] == -32603  # bad JSON
            assert (await error(client, '{"jsonrpc":'))["id"] is None
            assert (await error(client, call("nosuch", {})))["code"] == -32601
            assert (await error(client, call("control", {"type": "PAUSE"})))["code"] == -32003
            assert (await error(client, call("execute", {"command": "rm -rf x"})))["code"] == (
                -32002  # command not allowed
            )
            assert (await error(client, call("execute", {})))["code"] == -32603  # bad params
            for empty in ("", "   "):  # the original's validate_command: "command not allowed"
                refused = await error(client, call("execute", {"command": empty}))
                assert (refused["code"], refused["message"]) == (-32002, "Command cannot be empty")
            await client.send("execute", {"command": "sleep 60"})
            assert (await client.recv())["result"]["status"] == "started"
            await client.recv()  # process.started
            assert (await error(client, call("execute", {"command": "echo x"})))["code"] == (
                -32001  # a limit (the original's session limit)
            )
        async with original_client(served.port) as client:
            await client.send("execute", {"command": "echo done"})
            await client.until("process.completed")
            # A control on a process that is gone: "process not found", as the original said.
            assert (await error(client, call("control", {"type": "PAUSE"})))["code"] == -32003


async def test_a_control_after_runs_one_after_another_is_on_the_last_one(served: Served) -> None:
    """The original kept one process per connection, the last started: after two runs in a
    row, a control is on the second (gone: "process not found"), not a generic -32603
    asking for a run id the original's clients never send."""
    with trio.fail_after(20):
        async with original_client(served.port) as client:
            for command in ("echo first", "echo second"):
                await client.send("execute", {"command": command})
                await client.until("process.completed")
            for kind in ("PAUSE", "RESUME", "CANCEL"):
                refused = await client_error(client, call("control", {"type": kind}))
                assert refused["code"] == -32003, refused
            await client.send("execute", {"command": "sleep 60"})
            await client.until("process.started")
            await client.send("control", {"type": "CANCEL"})
            assert (await client.recv())["result"]["status"] == "canceled"


# -- GET /health ---------------------------------------------------------------------------


async def http_get(port: int, path: str) -> tuple[str, bytes]:
    """The status line and body of a plain GET."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length: %d" % len(body) in head.lower()
    return head.split(b"\r\n")[0].decode(), body


async def test_get_health_answers_the_originals_shape(served: Served) -> None:
    with trio.fail_after(10):
        async with original_client(served.port):
            status, body = await http_get(served.port, "/health")
        healthz = await http_get(served.port, "/healthz")
        readyz = await http_get(served.port, "/readyz")
    assert status == "HTTP/1.1 200 OK"
    health = json.loads(body)
    assert list(health) == [
        "status",
        "service",
        "version",
        "active_sessions",
        "max_sessions",
        "uptime_seconds",
        "draining",
    ]
    assert health["status"] == "healthy"
    assert health["active_sessions"] == 1
    assert health["max_sessions"] == served.daemon.config.max_connections
    assert health["uptime_seconds"] >= 0
    assert health["draining"] is False
    assert healthz == ("HTTP/1.1 200 OK", b"ok\n")
    assert readyz == ("HTTP/1.1 200 OK", b"ready\n")


# -- choosing the protocol -------------------------------------------------------------------


async def test_connected_names_the_profile_on_ws_mcp_only(served: Served) -> None:
    greetings = {}
    with trio.fail_after(10):
        for path in ("/", "/ws/mcp", "/ws/mcp?protocol=current", "/?protocol=original"):
            async with open_websocket_url(f"ws://127.0.0.1:{served.port}{path}") as ws:
                greetings[path] = json.loads(await ws.get_message())["params"]
    assert "protocol" not in greetings["/"]
    assert "protocol" not in greetings["/ws/mcp?protocol=current"]
    assert greetings["/ws/mcp"]["protocol"] == "original"
    assert greetings["/?protocol=original"]["protocol"] == "original"
    assert set(greetings["/"]) == set(greetings["/ws/mcp"]) - {"protocol"}


async def test_an_unknown_protocol_is_refused_and_closed(served: Served) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(f"ws://127.0.0.1:{served.port}/ws/mcp?protocol=v9") as ws:
            refusal = json.loads(await ws.get_message())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert refusal["id"] is None
    assert refusal["error"]["code"] == -32600
    assert refusal["error"]["data"] == {"protocol": ["v9"], "known": ["current", "original"]}
    assert closed.value.reason is not None
    assert closed.value.reason.code == 1008


# -- the current protocol on `/` is unchanged --------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/ws/mcp?protocol=current"])
async def test_the_current_protocol_batches_and_keeps_its_codes(
    served: Served, path: str, tmp_path: Path
) -> None:
    with trio.fail_after(20):
        async with original_client(served.port, path) as client:
            await client.send("execute", {"command": stub_claude(tmp_path)})
            run = (await client.recv())["result"]["run"]
            await client.recv()  # process.started
            frames, completed = await client.until("process.completed")
            bad_json = await client_error(client, '{"jsonrpc":')
            lenient = await client_error(
                client, call("execute", {"command": "echo x", "id": "h", "path": "/tmp"})
            )
            no_run = await client_error(client, call("control", {"type": "PAUSE", "run": "zz"}))
            await client.send("execute", {"command": "sh -c 'echo ready; exec sleep 60'"})
            sleeper = (await client.recv())["result"]["run"]
            await client.until("process.output")
            await client.send("control", {"type": "CANCEL", "run": sleeper})
            cancel_reply = await client.recv()
            after_cancel = await client.recv()
    lines = outputs(frames)
    # Batched: far fewer frames than lines, several lines in one frame, seq one per frame.
    assert len(lines) < 302
    assert max(p["data"].count("\n") for p in lines) > 1
    assert "".join(p["data"] for p in lines).count("\n") == 302
    assert [p["seq"] for p in lines] == list(range(1, len(lines) + 1))
    assert all("truncated" not in p for p in lines)
    assert completed["params"]["seq"] == len(lines) + 1
    # Byte for byte the frame the current encoder makes.
    first = frames[0]["params"]
    data = first["data"].encode()
    assert orjson.loads(encode_output(run, 1, "stdout", data)) == frames[0]
    # Its codes.
    assert (bad_json["code"], bad_json["id"]) == (-32700, None)
    assert lenient["code"] == -32602
    assert "unexpected fields (id, path)" in lenient["message"]
    assert no_run["code"] == -32002
    # A cancel is answered, then the completion: no process.canceled.
    assert cancel_reply["result"]["status"] == "canceled"
    assert after_cancel["method"] == "process.completed"


async def test_current_protocol_frames_are_byte_for_byte(served: Served) -> None:
    with trio.fail_after(20):
        async with open_websocket_url(served.url) as ws:
            await ws.get_message()
            request = '{"jsonrpc":"2.0","id":1,"method":"execute","params":{"argv":["echo","hi"]}}'
            await ws.send_message(request)
            texts = [str(await ws.get_message()) for _ in range(4)]
            await ws.send_message('{"jsonrpc":"2.0","id":2,"method":"control","params":{}}')
            texts.append(str(await ws.get_message()))
    reply = json.loads(texts[0])
    run, pid = reply["result"]["run"], reply["result"]["pid"]
    assert texts[0] == (
        f'{{"jsonrpc":"2.0","id":1,"result":{{"status":"started","run":"{run}",'
        f'"pid":{pid},"pgid":{pid}}}}}'
    )
    assert texts[1] == (
        f'{{"jsonrpc":"2.0","method":"process.started","params":{{"run":"{run}",'
        f'"status":"started","pid":{pid},"pgid":{pid},"argv":["echo","hi"]}}}}'
    )
    assert texts[2] == (
        f'{{"jsonrpc":"2.0","method":"process.output","params":{{"run":"{run}","seq":1,'
        f'"type":"stdout","data":"hi\\n"}}}}'
    )
    assert texts[3].startswith(
        f'{{"jsonrpc":"2.0","method":"process.completed","params":{{"run":"{run}","seq":2,'
        '"status":"completed","outcome":"exited","exit_code":0,"signal":null,'
    )
    assert json.loads(texts[4])["error"]["code"] == -32602


def call(method: str, params: dict[str, Any]) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": 5, "method": method, "params": params})


async def client_error(client: OriginalClient, text: str) -> dict[str, Any]:
    await client.ws.send_message(text)
    frame = await client.recv()
    assert "error" in frame, frame
    error: dict[str, Any] = frame["error"]
    return error | {"id": frame["id"]}


async def test_the_connection_limit_speaks_the_originals_code_on_its_path(
    nursery: trio.Nursery,
) -> None:
    """Refused at max_connections: -32001 ("session limit") on /ws/mcp, -32003 on /."""
    served = await start_daemon(nursery, make_config(max_connections=1))
    base = f"ws://127.0.0.1:{served.port}"
    with trio.fail_after(20):
        async with open_websocket_url(f"{base}/") as holder:
            await holder.get_message()  # the greeting: the one slot is taken
            for path, code in (("/ws/mcp", -32001), ("/", -32003)):
                async with open_websocket_url(f"{base}{path}") as ws:
                    refusal = orjson.loads(await ws.get_message())
                    assert refusal["error"]["code"] == code, path
                    with pytest.raises(ConnectionClosed) as info:
                        await ws.get_message()
                    assert info.value.reason is not None
                    assert info.value.reason.code == 1013
