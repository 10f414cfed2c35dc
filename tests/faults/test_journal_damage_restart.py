"""One flipped byte in a completed run's journal, through a daemon restart, over the wire.

Observed on main: after a restart, recovery cut every record after the bad one and reported
the run, which had exited 0, as lost; attaching replayed half of it and stopped silently.
"""

from __future__ import annotations

from pathlib import Path

import trio
from ccx_testing import run_daemon
from durable_testing import open_durable_client
from faults_journal_testing import flip_byte, record_offsets


async def test_a_flipped_byte_is_reported_and_the_completed_run_stays_completed(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            # Output in several records: a line every few ms, so no batch holds all of it.
            script = "for i in $(seq 1 40); do echo line $i; sleep 0.005; done"
            run = (await client.call("execute", argv=["sh", "-c", script], durable=True))["run"]
            first = await client.wait_completed(run)
            assert first.completed is not None
            assert first.completed["exit_code"] == 0
        path = next((state / "journals").glob("*.journal"))
        records = record_offsets(path)
        assert len(records) >= 4, records
        offset, damaged_seq = records[len(records) // 2]
        flip_byte(path, offset + 14)  # inside the record's head: its CRC no longer holds
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run=run)
            await daemon.wait_logged("durable.recovered")  # every line of recovery is read
            assert not any('"run.lost"' in line for line in daemon.stderr_lines)
            assert status["outcome"] == "exited"
            assert status["exit_code"] == 0
            assert [(d["first_seq"], d["last_seq"]) for d in status["journal"]["damaged"]] == [
                (damaged_seq, damaged_seq)
            ]
            await client.attach(run, 0)
            replayed = await client.wait_completed(run)
            assert replayed.completed is not None
            assert replayed.completed["seq"] == first.completed["seq"]
            (gap,) = client.gaps
            assert gap["reason"] == "journal damaged"
            assert (gap["seq"], gap["until_seq"], gap["offset"]) == (
                damaged_seq,
                damaged_seq,
                offset,
            )
            # Everything but the damaged record's bytes, in order: a subsequence of the original.
            missing = len(first.stdout) - len(replayed.stdout)
            assert missing > 0
            lines = bytes(replayed.stdout).splitlines()
            assert lines == [line for line in bytes(first.stdout).splitlines() if line in lines]


async def test_a_compacted_journal_whose_completion_is_damaged_keeps_its_seqs_in_order(
    tmp_path: Path,
) -> None:
    """Retention left META, REMOVED 1..n and the completion; a flipped byte in the completion,
    then a restart: the run is completed as lost *after* the removed range (its cut tail a gap
    at n + 1), so attaching where the -32009 error says works.  (Found by a chaos run: the lost
    completion was numbered 2 after a removed 1..5, and attaching from 5 was refused as beyond
    the run's last seq.)"""
    state = tmp_path / "state"
    script = "for i in $(seq 1 10); do echo line $i; sleep 0.005; done"
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", str(state), "--retention-seconds", "0") as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = (await client.call("execute", argv=["sh", "-c", script], durable=True))["run"]
            first = await client.wait_completed(run)
            assert first.completed is not None
            # No event says retention is done: `status` is asked until it says so.
            while (await client.call("status", run=run))["journal"]["removed"] is None:  # noqa: ASYNC110
                await trio.sleep(0.02)
        path = state / "journals" / f"{run}.journal"
        removed_last = first.completed["seq"] - 1
        assert removed_last >= 3
        flip_byte(path, path.stat().st_size - 1)  # the last byte: the completion's CRC fails
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run=run)
            assert status["journal"]["removed"] == {"first": 1, "last": removed_last}
            assert status["outcome"] == "lost"
            assert status["last_seq"] == removed_last + 2  # the cut tail's gap, the completion
            error = await client.call_error("attach", run=run, from_seq=0)
            assert error.code == -32009
            assert error.data["available_from_seq"] == removed_last
            await client.attach(run, removed_last)
            replayed = await client.wait_completed(run)
            assert replayed.completed is not None
            assert replayed.completed["seq"] == removed_last + 2
            assert replayed.completed["outcome"] == "lost"
            (gap,) = client.gaps
            assert gap["seq"] == removed_last + 1
            assert gap["reason"].startswith("journal damaged")
