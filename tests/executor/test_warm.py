"""A daemon's first requests load nothing: the request path is loaded before it listens."""

from __future__ import annotations

import trio
from ccx_testing import open_client, run_daemon

IMPORT_LINE = "import time:"  # what PYTHONPROFILEIMPORTTIME prints for every module loaded


async def test_first_requests_import_no_module() -> None:
    with trio.fail_after(60):
        async with run_daemon(env={"PYTHONPROFILEIMPORTTIME": "1"}) as daemon:
            listening = next(
                i for i, line in enumerate(daemon.stderr_lines) if "daemon.listening" in line
            )
            assert any(IMPORT_LINE in line for line in daemon.stderr_lines[:listening])
            async with open_client(daemon.url) as client:
                run = await client.execute(argv=["sh", "-c", "echo hi; sleep 30"])
                await client.wait_output(run, b"hi\n")
                assert (await client.call("status", run=run))["state"] == "running"
                assert [r["run"] for r in (await client.call("list"))["runs"]] == [run]
                refused = await client.call_error("execute", argv=["true"], timeout="7")
                assert refused.code == -32602
                await client.call("control", run=run, type="CANCEL")
                await client.wait_completed(run)
            late = [line for line in daemon.stderr_lines[listening:] if IMPORT_LINE in line]
            assert late == [], late
