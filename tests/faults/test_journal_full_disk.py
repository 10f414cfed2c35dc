"""A real full disk under a durable run: a 2 MiB tmpfs as the state directory.

Observed on main: `yes | head -c 50000000` as a durable run on such a disk: the short write
switched the pump to discard mode, the child wrote all 50 MB, the attached client got a few
events and then nothing (no gap, no completion, no error), `status` said completed with no
outcome, and after a restart the run was reported "lost while live".
"""

from __future__ import annotations

from pathlib import Path

import trio
from ccx_testing import proc_stat, run_daemon
from durable_testing import open_durable_client
from faults_journal_testing import small_tmpfs, status_until, wait_notification

FIREHOSE = ["sh", "-c", "yes | head -c 50000000"]


async def test_block_policy_holds_the_child_reports_the_error_and_records_the_cancel(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(120):
        state = str(disk / "state")
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = (await client.call("execute", argv=FIREHOSE, durable=True))["run"]
            fault = await wait_notification(client, "process.journal_error", run)
            assert fault["policy"] == "block"
            assert "No space left on device" in fault["reason"]
            status = await status_until(client, run, lambda s: s["journal"]["blocked"])
            assert status["state"] == "running"  # the child waits for the disk
            assert status["journal"]["error"]["seq"] == fault["seq"]
            assert status["stdout_bytes"] < 50_000_000
            reply = await client.call("control", type="CANCEL", run=run)
            assert reply["status"] == "canceled"
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "cancelled"
            assert record.completed["reason"] == "cancelled by client"
            status = await client.call("status", run=run)
            assert status["outcome"] == "cancelled"
            assert status["journal"]["faults"] == 1  # said after the fact too
            assert status["journal"]["gap_from_seq"] is not None
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run=run)
            assert status["outcome"] == "cancelled"  # the truth, not "lost while live"
            assert status["reason"] == "cancelled by client"
            await client.attach(run, 0)
            replayed = await client.wait_completed(run)
            assert replayed.completed is not None
            assert replayed.completed["seq"] == record.completed["seq"]


async def test_pause_and_resume_of_a_run_held_by_a_full_disk_are_refused_at_once(
    tmp_path: Path,
) -> None:
    """Its state change could not be recorded until the disk takes writes again: a PAUSE or
    RESUME would wait with the run, its client with no answer (found by a chaos run: neither
    was answered for as long as the disk stayed full).  Both are refused at once with the
    journal's error, from the starting connection and from another; nothing is stopped, and
    CANCEL still ends the run."""
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(120):
        state = str(disk / "state")
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
            open_durable_client(daemon.url) as other,
        ):
            started = await client.call("execute", argv=FIREHOSE, durable=True)
            run = started["run"]
            await status_until(client, run, lambda s: s["journal"]["blocked"])
            # Many times: the journal retries its write with a backoff meanwhile, and a
            # control between two retries is refused the same way.
            for _ in range(25):
                for who in (client, other):
                    for action in ("PAUSE", "RESUME"):
                        error = await who.call_error("control", type=action, run=run)
                        assert error.code == -32005
                        assert "No space left on device" in error.message
                        assert error.data["journal"]["blocked"] is True
            stat = proc_stat(started["pid"])
            assert stat is not None
            assert stat[0] != "T"  # nothing was stopped
            assert (await client.call("status", run=run))["state"] == "running"
            reply = await other.call("control", type="CANCEL", run=run)
            assert reply["status"] == "canceled"
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "cancelled"


async def test_cancel_policy_ends_the_run_with_a_reason_naming_the_error(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(120):
        state = str(disk / "state")
        async with (
            run_daemon("--state-dir", state, "--journal-error-policy", "cancel") as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = (await client.call("execute", argv=FIREHOSE, durable=True))["run"]
            fault = await wait_notification(client, "process.journal_error", run)
            assert fault["policy"] == "cancel"
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "cancelled"
            assert "journal write failed" in record.completed["reason"]
            assert "No space left on device" in record.completed["reason"]
            assert any(gap["run"] == run for gap in client.gaps)  # what was not recorded
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run=run)
            assert status["outcome"] == "cancelled"
            assert "No space left on device" in status["reason"]
