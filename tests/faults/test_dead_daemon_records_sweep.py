"""Many dead daemons' records at start: swept a batch to a scan of /proc, and a stop ends it.

Observed on main: each dead record cost one full scan of /proc (its processes, their
environments): 2,000 stale records took 3.7 s to sweep, and with 10,000 a SIGTERM during the
sweep took 14 s to stop the daemon, which waited for the worker thread to sweep them all.  Now
`BATCH` records share one scan (every id of the batch matched in it), and the sweep ends at
the first batch boundary once the daemon stops, the rest left for the next start
(executor/daemon/record.py, executor/daemon/serve.py).  The records are what a daemon leaves
when it is SIGKILLed: a file of its id, unlocked once the kernel dropped its lock.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import trio
from ccx_testing import run_daemon
from daemon_records_testing import logged, marked_sleep, records

from cc_executor.executor.daemon.record import BATCH, directory_of


def dead_records(state: Path, count: int) -> list[str]:
    """`count` records of daemons gone, their ids in the order a sweep takes them."""
    directory = Path(directory_of(str(state)))
    directory.mkdir(parents=True)
    ids = [f"{i:032x}" for i in range(count)]
    for daemon_id in ids:
        (directory / f"{daemon_id}.lock").touch()
    return ids


def end(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def test_the_records_of_a_batch_share_one_scan(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ids = dead_records(state, 2 * BATCH + 10)
    # Leftovers of three dead daemons, all in the first batch; none in the others.
    leftovers = {daemon_id: marked_sleep(daemon_id) for daemon_id in ids[:3]}
    try:
        with trio.fail_after(90):
            async with run_daemon("--state-dir", str(state)) as daemon:
                await daemon.wait_logged("daemon.records_checked")
                for process in leftovers.values():
                    assert process.wait(timeout=10) == -signal.SIGKILL
                lines = daemon.stderr_lines
                killed = {
                    line["daemon_id"]: line["killed"]
                    for line in logged(lines, "daemon.leftovers_killed")
                }
                assert killed == {i: [p.pid] for i, p in leftovers.items()}
                first, second, third = logged(lines, "daemon.records_swept")
                assert [batch["dead"] for batch in (first, second, third)] == [BATCH, BATCH, 10]
                # A scan found the leftovers and one more found none (or a few more while
                # they were dying): never one a record.
                assert 2 <= first["scans"] <= 10  # type: ignore[operator]
                assert second["scans"] == third["scans"] == 1
                [checked] = logged(lines, "daemon.records_checked")
                assert checked["dead"] == len(ids)
                assert checked["scans"] == sum(b["scans"] for b in (first, second, third))  # type: ignore[misc]
                assert len(records(str(state))) == 1  # its own
    finally:
        end(list(leftovers.values()))


async def test_a_stop_during_a_long_sweep_leaves_the_rest_for_the_next_start(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    ids = dead_records(state, 20_000)
    first, last = marked_sleep(ids[0]), marked_sleep(ids[-1])
    try:
        with trio.fail_after(120):
            async with run_daemon("--state-dir", str(state)) as daemon:
                await daemon.wait_logged("daemon.records_swept")
                daemon.process.send_signal(signal.SIGTERM)
                await daemon.process.wait()
            assert daemon.process.returncode == 0
            [left] = logged(daemon.stderr_lines, "daemon.records_left")
            assert 0 < left["left"] < len(ids)  # type: ignore[operator]
            assert not logged(daemon.stderr_lines, "daemon.records_checked")
            # The first batch was swept, its leftovers killed; the rest are on disk as they
            # were (the stopped daemon's own record removed), their leftovers alive.
            assert first.wait(timeout=10) == -signal.SIGKILL
            assert last.poll() is None
            remaining = records(str(state))
            assert len(remaining) == left["left"]
            assert remaining[-1] == f"{ids[-1]}.lock"
            async with run_daemon("--state-dir", str(state)) as daemon:
                await daemon.wait_logged("daemon.records_checked")
                [checked] = logged(daemon.stderr_lines, "daemon.records_checked")
                assert checked["dead"] == left["left"]
                assert last.wait(timeout=10) == -signal.SIGKILL
            assert records(str(state)) == []
    finally:
        end([first, last])
