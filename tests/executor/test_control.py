"""PAUSE / RESUME / CANCEL reply only once their effect holds, even under a firehose."""

from __future__ import annotations

from pathlib import Path

import trio
from ccx_testing import Served, open_client, pids_in_file, proc_stat, wait_until

# A parent, a child and a grandchild that left the group with setsid: all must stop.
TREE = (
    "setsid sh -c 'echo $$ >> {pids}; while :; do :; done' & "
    "sh -c 'echo $$ >> {pids}; while :; do :; done' & "
    "echo $$ >> {pids}; wait"
)


def states(pids: list[int]) -> set[str]:
    return {stat[0] for pid in pids if (stat := proc_stat(pid)) is not None}


async def test_pause_replies_only_when_every_process_is_stopped(
    served: Served, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sh", "-c", TREE.format(pids=pid_file)])
            await wait_until(lambda: pid_file.exists() and len(pids_in_file(str(pid_file))) == 3)
            pids = pids_in_file(str(pid_file))
            for _ in range(5):
                await client.call("control", type="PAUSE", run=run)
                # Read /proc the moment the reply is here: every process is already stopped.
                assert states(pids) == {"T"}
                await client.call("control", type="RESUME", run=run)
                assert "T" not in states(pids)
            status = await client.call("status", run=run)
            assert status["state"] == "running"
            await client.call("control", type="CANCEL", run=run)


async def test_invalid_transitions_get_clear_errors(served: Served) -> None:
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sleep", "30"])
            exc = await client.call_error("control", type="RESUME", run=run)
            assert exc.code == -32005
            assert exc.data["state"] == "running"
            await client.call("control", type="PAUSE", run=run)
            exc = await client.call_error("control", type="PAUSE", run=run)
            assert exc.code == -32005
            assert exc.data["state"] == "paused"
            await client.call("control", type="CANCEL", run=run)
            await client.wait_completed(run)
            for kind in ("PAUSE", "RESUME", "CANCEL"):
                exc = await client.call_error("control", type=kind, run=run)
                assert exc.code == -32005
                assert exc.data["state"] == "completed"


async def test_controls_answered_while_a_firehose_streams(served: Served) -> None:
    firehose = ["sh", "-c", "yes 0123456789012345678901234567890123456789012345678901234567890"]
    with trio.fail_after(60):
        async with open_client(served.url, max_message_size=64 * 1024 * 1024) as client:
            run = await client.execute(argv=firehose)
            await client.wait_output(run, b"\n" * 1)
            for _ in range(10):
                assert (await client.call("control", type="PAUSE", run=run))["status"] == "paused"
                assert (await client.call("control", type="RESUME", run=run))["status"] == (
                    "resumed"
                )
            result = await client.call("control", type="CANCEL", run=run)
            record = await client.wait_completed(run)
    assert result["status"] == "canceled"
    assert record.completed is not None
    assert len(record.stdout) > 0
    lines = bytes(record.stdout).split(b"\n")
    assert set(lines[:-1]) == {firehose[2][4:].encode()}, "no line lost, torn or duplicated"


async def test_signal_reaches_the_run(served: Served) -> None:
    script = "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.05; done"
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sh", "-c", script])
            await client.wait_output(run, b"ready\n")
            result = await client.call("signal", run=run, signal="USR1")
            assert result == {"status": "signalled", "run": run, "signal": "SIGUSR1"}
            record = await client.wait_completed(run)
            assert bytes(record.stdout) == b"ready\ngot-usr1\n"
            assert record.completed is not None
            assert record.completed["exit_code"] == 7
            exc = await client.call_error("signal", run=run, signal="SIGUSR1")
            assert exc.code == -32005


async def test_stdin_write_and_close(served: Served) -> None:
    script = 'echo ready; while read line; do echo "<$line>"; done; echo eof'
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sh", "-c", script], stdin="pipe")
            await client.wait_output(run, b"ready\n")
            result = await client.call("stdin", run=run, data="hello\n")
            assert result == {"status": "written", "run": run, "bytes": 6, "eof": False}
            await client.wait_output(run, b"<hello>\n")
            await client.call("stdin", run=run, data="YnllCg==", encoding="base64", eof=True)
            record = await client.wait_completed(run)
            assert bytes(record.stdout) == b"ready\n<hello>\n<bye>\neof\n"
            exc = await client.call_error("stdin", run=run, data="late")
            assert exc.code == -32005
            # A run whose stdin is not a pipe refuses writes.
            other = await client.execute(argv=["sleep", "30"])
            exc = await client.call_error("stdin", run=other, data="x")
            assert exc.code == -32005
            await client.call("control", type="CANCEL", run=other)
