"""A daemon SIGKILLed mid-run: the next one reports the run lost and kills its leftovers."""

from __future__ import annotations

import signal
from pathlib import Path

import trio
from ccx_testing import alive, pids_in_file, run_daemon, wait_until
from durable_testing import open_durable_client


async def test_sigkilled_daemon_run_is_lost_leftovers_killed_journal_readable(
    tmp_path: Path,
) -> None:
    state = str(tmp_path / "state")
    pid_file = tmp_path / "pids"
    # The root, a background child in its group, and a grandchild that left the session.
    script = (
        f"echo $$ >> {pid_file}; sleep 300 & echo $! >> {pid_file}; "
        f"setsid sh -c 'echo $$ >> {pid_file}; exec sleep 300' & "
        "seq 1 1000; echo ready; exec sleep 300"
    )
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = (await client.call("execute", argv=["sh", "-c", script], durable=True))["run"]
            await client.wait_output(run, b"ready\n")
            await wait_until(lambda: pid_file.exists() and len(pids_in_file(str(pid_file))) == 3)
            before = client.runs[run]
            seen_stdout = bytes(before.stdout)
            pids = pids_in_file(str(pid_file))
            assert all(alive(pid) for pid in pids)
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
        # The daemon is gone; its run's processes are not (nobody killed them yet).
        assert any(alive(pid) for pid in pids)
        async with run_daemon("--state-dir", state) as daemon:
            await wait_until(lambda: not any(alive(pid) for pid in pids), bound=15)
            # The state directory is read while the daemon serves: the run is completed as
            # lost once its leftovers are killed.
            await daemon.wait_logged("run.lost")
            async with open_durable_client(daemon.url) as client:
                listed = {r["run"]: r for r in (await client.call("list"))["runs"]}
                lost = listed[run]
                assert lost["state"] == "completed"
                assert lost["outcome"] == "lost"
                assert lost["reason"] == "daemon restarted while the run was live"
                await client.attach(run, 0)
                record = await client.wait_completed(run)
                assert bytes(record.stdout) == seen_stdout
                assert record.completed is not None
                assert record.completed["outcome"] == "lost"
                assert record.completed["seq"] == lost["last_seq"]
                error = await client.call_error("control", type="CANCEL", run=run)
                assert error.code == -32005
        # A third start finds nothing left to recover: the run stays lost, once.
        async with run_daemon("--state-dir", state) as daemon:
            await daemon.wait_logged("durable.recovered")
            assert not any('"run.lost"' in line for line in daemon.stderr_lines)
            async with open_durable_client(daemon.url) as client:
                status = await client.call("status", run=run)
                assert status["outcome"] == "lost"


async def test_a_graceful_shutdown_journals_the_cancel(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    with trio.fail_after(60):
        async with run_daemon("--state-dir", state, "--term-grace", "1") as daemon:
            async with open_durable_client(daemon.url) as client:
                run = (
                    await client.call(
                        "execute", argv=["sh", "-c", "echo go; exec sleep 300"], durable=True
                    )
                )["run"]
                await client.wait_output(run, b"go\n")
                daemon.process.terminate()
                record = await client.wait_completed(run)
                assert record.completed is not None
                assert record.completed["reason"] == "daemon shutdown"
            await daemon.process.wait()
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run=run)
            assert status["outcome"] == "cancelled"
            assert status["reason"] == "daemon shutdown"
