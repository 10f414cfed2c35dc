"""A daemon started on a read-only state directory still knows its runs and kills leftovers.

Observed on main: with the file system under the journals remounted read-only (as ext4's
``errors=remount-ro`` does after an I/O error, or a volume mounted read-only), every journal's
open for reading *and writing* failed with EROFS, so the daemon knew none of its runs: a
finished run's recorded output was -32002, and a run that died with the previous daemon was
never recovered, its leftover processes left running for as long as this daemon ran.  Now a
journal that cannot be opened for writing is read all the same; a lost run's leftovers are
killed and its completion, which cannot be written, is kept in memory (as on a full disk at
start), so the next start on a writable disk completes it again.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import trio
from ccx_testing import alive, pids_in_file, run_daemon, wait_until
from durable_testing import open_durable_client
from faults_journal_testing import small_tmpfs


def remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


async def test_a_read_only_state_dir_serves_its_runs_and_recovers_the_lost_one(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", "4m") as disk, trio.fail_after(90):
        state = str(disk / "state")
        pid_file = tmp_path / "pids"
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            done = (await client.call("execute", argv=["seq", "1", "3"], durable=True))["run"]
            await client.wait_completed(done)
            script = f"echo $$ >> {pid_file}; echo ready; exec sleep 300"
            lost = (await client.call("execute", argv=["sh", "-c", script], durable=True))["run"]
            await client.wait_output(lost, b"ready\n")
            await wait_until(lambda: pid_file.exists() and len(pids_in_file(str(pid_file))) == 1)
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
        [leftover] = pids_in_file(str(pid_file))
        assert alive(leftover)
        remount(disk, "ro")
        try:
            async with (
                run_daemon("--state-dir", state) as daemon,
                open_durable_client(daemon.url) as client,
            ):
                await wait_until(lambda: not alive(leftover), bound=15)
                await client.attach(done, 0)
                assert (await client.wait_completed(done)).stdout == b"1\n2\n3\n"
                status = await client.call("status", run=lost)
                assert (status["state"], status["outcome"]) == ("completed", "lost")
                assert "Read-only file system" in status["journal"]["error"]["reason"]
                await client.attach(lost, 0)
                record = await client.wait_completed(lost)
                assert record.stdout == b"ready\n"
                assert record.completed is not None
                assert record.completed["outcome"] == "lost"
                error = await client.call_error("execute", argv=["true"], durable=True)
                assert "Read-only file system" in error.message
        finally:
            remount(disk, "rw")
        # Writable again: the lost completion the read-only disk could not take is written.
        async with run_daemon("--state-dir", state) as daemon:
            await daemon.wait_logged("run.lost")
            async with open_durable_client(daemon.url) as client:
                status = await client.call("status", run=lost)
                assert (status["state"], status["outcome"]) == ("completed", "lost")
                assert status["journal"]["error"] is None
        async with run_daemon("--state-dir", state) as daemon:
            await daemon.wait_logged("durable.recovered")
            assert not any('"run.lost"' in line for line in daemon.stderr_lines)
