"""The original CC-Executor's request flow, read by the strict test client (one seq per frame).

On `/`, and on `/ws/mcp` opted into the current protocol (`?protocol=current`): the same flow,
the same frames.  What `/ws/mcp` sends without the opt-in — the original's own framing — is
test_original_clients.py.
"""

from __future__ import annotations

import pytest
import trio
from ccx_testing import Served, open_client


@pytest.mark.parametrize("path", ["/", "/ws/mcp?protocol=current"])
async def test_execute_command_string_streams_until_completed(served: Served, path: str) -> None:
    url = f"ws://127.0.0.1:{served.port}{path}"
    with trio.fail_after(20):
        async with open_client(url) as client:
            result = await client.call(
                "execute", command="sh -c 'echo one; echo two >&2; echo three; exit 3'"
            )
            assert result["status"] == "started"
            assert result["pgid"] == result["pid"]
            record = await client.wait_completed(result["run"])
    started = [n for n in client.notifications if n["method"] == "process.started"]
    assert started[0]["params"]["pid"] == result["pid"]
    assert bytes(record.stdout) == b"one\nthree\n"
    assert bytes(record.stderr) == b"two\n"
    completed = record.completed
    assert completed is not None
    assert completed["exit_code"] == 3
    assert completed["status"] == "failed"
    assert completed["outcome"] == "exited"
    assert completed["stdout_bytes"] == 10
    assert completed["stderr_bytes"] == 4
    assert completed["execution_time"] >= 0


async def test_control_without_run_id_and_completion_after_cancel(served: Served) -> None:
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            await client.call("execute", command="sh -c 'echo ready; exec sleep 30'")
            assert (await client.call("control", type="PAUSE"))["status"] == "paused"
            assert (await client.call("control", type="RESUME"))["status"] == "resumed"
            result = await client.call("control", type="CANCEL")
            assert result["status"] == "canceled"
            assert result["rung"] == "sigterm"
            (record,) = client.runs.values()
            record = await client.wait_completed(record.run)
    assert record.completed is not None
    assert record.completed["status"] == "canceled"
    assert record.completed["outcome"] == "cancelled"
    assert record.completed["signal"] == "SIGTERM"
    methods = [event["method"] for event in record.events]
    assert methods[-1] == "process.completed"
    assert "process.paused" in methods
    assert "process.resumed" in methods
