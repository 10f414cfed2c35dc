"""Binary output frames end to end: negotiated by subprotocol, byte-exact, in order with the
run's text events and the replies to controls; refused or absent, everything is JSON text."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from ccx_testing import Served, make_config, open_client, start_daemon, wait_until
from durable_testing import open_durable_client
from trio_websocket import ConnectionClosed, open_websocket_url

from cc_executor.executor.client import ClientConfig, Completed, Output, open_connection
from cc_executor.executor.daemon import daemon as daemon_module
from cc_executor.executor.rpc.session import Session
from cc_executor.protocol.binary import BINARY_SUBPROTOCOL

PY = sys.executable
# Every byte value, NULs and bytes that are never UTF-8 among them, split across writes.
CHILD = (
    "import os, sys\n"
    "block = bytes(range(256)) * 64\n"
    "for i in range(200):\n"
    "    os.write(1, block[i:] + b'\\n')\n"
    "    if i % 50 == 0: os.write(2, b'\\xff\\x00err\\n')\n"
)


def expected() -> tuple[bytes, bytes]:
    block = bytes(range(256)) * 64
    out = b"".join(block[i:] + b"\n" for i in range(200))
    err = b"\xff\x00err\n" * 4
    return out, err


async def test_output_is_binary_byte_exact_and_seq_contiguous(served: Served) -> None:
    with trio.fail_after(30):
        async with open_client(served.url, binary=True) as client:
            assert client.binary
            run = await client.execute(argv=[PY, "-c", CHILD])
            record = await client.wait_completed(run)
    out, err = expected()
    assert bytes(record.stdout) == out
    assert bytes(record.stderr) == err
    assert client.binary_frames >= 2
    # WireClient checked every seq, text and binary alike: contiguous, nothing after the end.
    assert record.completed is not None
    assert record.completed["stdout_bytes"] == len(out)
    assert [e["method"] for e in record.events][-1] == "process.completed"


async def test_controls_mixed_with_binary_output_keep_reply_before_event(served: Served) -> None:
    with trio.fail_after(30):
        async with open_client(served.url, binary=True) as client:
            run = await client.execute(argv=["yes", "binary frames under control"])
            await client.wait_output(run, b"control\n")
            for _ in range(5):
                for kind, event in (("PAUSE", "process.paused"), ("RESUME", "process.resumed")):
                    seen = len(client.notifications)
                    result = await client.call("control", type=kind, run=run)
                    assert result["run"] == run
                    # The reply came before the event it caused (WireClient saw it first).
                    assert event not in [n["method"] for n in client.notifications[seen:]]
                    while event not in [n["method"] for n in client.notifications[seen:]]:
                        await client.receive()
            await client.call("control", type="CANCEL", run=run)
            record = await client.wait_completed(run)
    assert client.binary_frames > 0
    lines = bytes(record.stdout).split(b"\n")
    assert set(lines[:-1]) == {b"binary frames under control"}
    assert b"binary frames under control".startswith(lines[-1])  # cut by the CANCEL


async def test_without_the_subprotocol_output_is_json_text(served: Served) -> None:
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            assert not client.binary
            run = await client.execute(argv=[PY, "-c", CHILD])
            record = await client.wait_completed(run)
    assert (bytes(record.stdout), bytes(record.stderr)) == expected()
    assert client.binary_frames == 0


async def test_the_originals_path_refuses_binary_output(served: Served) -> None:
    url = f"ws://127.0.0.1:{served.port}/ws/mcp"
    with trio.fail_after(10):
        async with open_websocket_url(url, subprotocols=[BINARY_SUBPROTOCOL]) as ws:
            refusal = json.loads(await ws.get_message())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert refusal["id"] is None
    # -32600 as documented, not the original profile's -32603: no original client offers it
    assert refusal["error"]["code"] == -32600
    assert refusal["error"]["data"] == {"subprotocol": BINARY_SUBPROTOCOL, "protocol": "original"}
    assert closed.value.reason is not None
    assert closed.value.reason.code == 1008


async def test_original_clients_on_ws_mcp_still_get_text_lines(served: Served) -> None:
    url = f"ws://127.0.0.1:{served.port}/ws/mcp"
    with trio.fail_after(10):
        async with open_websocket_url(url) as ws:
            assert ws.subprotocol is None
            assert json.loads(await ws.get_message())["method"] == "connected"
            params = {"command": "printf 'a\\nb\\n'"}
            request = {"jsonrpc": "2.0", "id": 1, "method": "execute", "params": params}
            await ws.send_message(json.dumps(request))
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1].get("method") != "process.completed":
                message = await ws.get_message()
                assert isinstance(message, str)
                frames.append(json.loads(message))
    lines = [f["params"]["data"] for f in frames if f.get("method") == "process.output"]
    assert lines == ["a\n", "b\n"]


@pytest.mark.parametrize("offered", [True, False])
async def test_the_client_library_uses_binary_frames_and_falls_back(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, offered: bool
) -> None:
    out, err = expected()
    if not offered:  # a daemon that does not know the subprotocol
        monkeypatch.delitem(daemon_module.SESSION_KINDS, BINARY_SUBPROTOCOL)
    served = await start_daemon(nursery, make_config())
    for asked in (True, False):
        config = ClientConfig(binary_output=asked)
        with trio.fail_after(30):
            async with open_connection(served.url, config=config) as conn:
                assert conn.binary_output is (offered and asked)
                run = await conn.execute([PY, "-c", CHILD])
                got = {"stdout": bytearray(), "stderr": bytearray()}
                seqs = []
                async for event in run:
                    seqs.append(event.seq)
                    if isinstance(event, Output):
                        got[event.stream] += event.data
                    assert not isinstance(event, Completed) or event.exit_code == 0
        assert (bytes(got["stdout"]), bytes(got["stderr"])) == (out, err)
        assert seqs == list(range(1, len(seqs) + 1))


async def test_a_durable_run_is_replayed_and_followed_in_binary_frames(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, make_config(state_dir=str(tmp_path / "state")))
    with trio.fail_after(60):
        async with open_durable_client(served.url, binary=True) as first:
            result = await first.call("execute", argv=[PY, "-c", CHILD], durable=True)
            run = result["run"]
            started = await first.wait_completed(run)
        async with open_durable_client(served.url, binary=True) as second:
            await second.attach(run, 0)
            replayed = await second.wait_completed(run)
        async with open_durable_client(served.url, binary=True) as third:
            await third.attach(run, 3)
            tail = await third.wait_completed(run)
    out, err = expected()
    for record in (started, replayed):
        assert (bytes(record.stdout), bytes(record.stderr)) == (out, err)
    assert second.binary_frames > 0
    assert third.binary_frames > 0
    digest = hashlib.sha256(bytes(replayed.stdout)).digest()
    assert digest == hashlib.sha256(out).digest()
    assert tail.completed is not None
    assert len(tail.stdout) < len(out)


async def test_ccx_run_uses_binary_frames(served: Served, nursery: trio.Nursery) -> None:
    assert ClientConfig().binary_output  # the library's default, and so ccx's
    child = "import os, time; time.sleep(1); os.write(1, bytes(range(256)))"
    done: list[subprocess.CompletedProcess[bytes]] = []

    async def run_ccx() -> None:
        argv = [PY, "-m", "cc_executor.executor", "run", "--url", served.url, "--", PY, "-c"]
        done.append(await trio.run_process([*argv, child], capture_stdout=True, check=False))

    with trio.fail_after(30):
        nursery.start_soon(run_ccx)
        await wait_until(lambda: bool(served.daemon.sessions))
        (session,) = served.daemon.sessions
        assert isinstance(session, Session)
        assert session.conn.binary_output
        await wait_until(lambda: bool(done))
    assert (done[0].returncode, done[0].stdout) == (0, bytes(range(256)))


async def test_a_binary_clients_runs_read_with_the_binary_stream_buffer(served: Served) -> None:
    config = served.daemon.config
    assert config.binary_stream_buffer != config.supervision.read_size
    sizes = {}
    with trio.fail_after(30):
        for binary in (True, False):
            async with open_client(served.url, binary=binary) as client:
                run = await client.execute(argv=["sleep", "30"])
                (supervised,) = [r for r in served.daemon.registry.runs() if r.run_id == run]
                sizes[binary] = supervised.config.read_size
                await client.call("control", type="CANCEL", run=run)
                await client.wait_completed(run)
    assert sizes == {True: config.binary_stream_buffer, False: config.supervision.read_size}
