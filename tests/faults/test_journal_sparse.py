"""A journal holding gigabytes of sparse zeros (a hole) is read at start in the time its data takes.

Observed on main: a finished run's journal extended by a 20 GB hole (`truncate -s`, or a file
system that crashed with a file's size updated but not its data) kept the daemon's recovery
busy for 343 s, scanning the zeros for a record a megabyte at a time, and every `list`,
`status` and `attach` waited for the recovery.  A hole holds no record (a record's kind byte
is never 0), so the scan for the next record now skips holes (SEEK_DATA).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio
from ccx_testing import run_daemon
from durable_testing import open_durable_client
from faults_journal_testing import record_offsets

HOLE = 64 << 30  # 64 GiB of zeros that take no disk: hours of scanning before the fix
SCRIPT = "echo one; sleep 0.05; echo two"


def insert_hole(path: Path, at: int) -> None:
    """Move the bytes of `path` from `at` on by HOLE bytes, leaving a hole before them."""
    data = path.read_bytes()
    with path.open("r+b") as f:
        f.truncate(at)
        f.seek(at + HOLE)
        f.write(data[at:])


async def completed_runs(state: Path, count: int) -> list[str]:
    """`count` durable runs of SCRIPT, completed, on a daemon that is then stopped."""
    async with (
        run_daemon("--state-dir", str(state)) as daemon,
        open_durable_client(daemon.url) as client,
    ):
        runs = []
        for _ in range(count):
            runs.append(
                (await client.call("execute", argv=["sh", "-c", SCRIPT], durable=True))["run"]
            )
            await client.wait_completed(runs[-1])
        daemon.process.send_signal(signal.SIGTERM)
        await daemon.process.wait()
    return runs


async def test_a_hole_in_a_journal_or_at_its_end_is_read_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(60):
        runs = await completed_runs(state, 2)
        middle, tail = (state / "journals" / f"{run}.journal" for run in runs)
        [(_, _), (second, _), *_] = record_offsets(middle)
        insert_hole(middle, second)  # between the run's first and second lines
        os.truncate(tail, tail.stat().st_size + HOLE)  # after its completion
        # Retention would compact a journal that size at once (10 GiB in all by default).
        keep = ("--retention-bytes", str(1 << 40))
        async with (
            run_daemon("--state-dir", str(state), *keep) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            listed = {run["run"]: run for run in (await client.call("list"))["runs"]}
            for run in runs:
                assert (listed[run]["state"], listed[run]["outcome"]) == ("completed", "exited")
                await client.attach(run, 0)
                assert (await client.wait_completed(run)).stdout == b"one\ntwo\n"
            assert listed[runs[0]]["journal"]["damaged"][0]["bytes"] == HOLE
            assert listed[runs[1]]["journal"]["truncated_bytes"] == HOLE


async def test_a_journal_replaced_by_a_huge_sparse_file_costs_no_other_run_its_events(
    tmp_path: Path,
) -> None:
    """Observed on main: retention counted the sparse file's size (64 GiB, above the 10 GiB
    that completed journals may hold by default) and removed the events of every other
    completed run, oldest first; it now counts what a journal takes of the disk."""
    state = tmp_path / "state"
    with trio.fail_after(60):
        runs = await completed_runs(state, 3)
        bogus = state / "journals" / f"{runs[-1]}.journal"
        bogus.unlink()
        bogus.touch()
        os.truncate(bogus, HOLE)
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            for run in runs[:-1]:
                await client.attach(run, 0)
                assert (await client.wait_completed(run)).stdout == b"one\ntwo\n"
            await client.attach(runs[-1], 0)
            assert (await client.wait_completed(runs[-1])).stdout == b""
            assert [gap["reason"].startswith("journal damaged") for gap in client.gaps] == [True]
            assert not any('"journal.removed"' in line for line in daemon.stderr_lines)
