"""Recovery after a daemon crash kills only what is provably the lost run's, under real pid reuse.

Observed on main: recovery SIGKILLed an unrelated process whose session id equalled the old
run's pgid (its pid had been reused), because a pgid/sid match and a start time after the
run's start counted as evidence.  Here the kernel is made to hand out the dead root's pid again
(/proc/sys/kernel/ns_last_pid, root only) to an unrelated session leader.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from ccx_testing import alive

from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.runs.durable import DurableRuns
from cc_executor.executor.runs.recovery import SUFFIX
from cc_executor.supervision.journal import Journal, JournalConfig, Meta, boot_id
from cc_executor.supervision.leftovers import start_ticks
from cc_executor.supervision.marker import RUN_ID_VAR

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def spawn_with_pid(pid: int, attempts: int = 200) -> subprocess.Popen[bytes]:
    """An unrelated session leader that gets exactly `pid` (other processes on the machine
    may take it first: retried a bounded number of times)."""
    for _ in range(attempts):
        with open(NS_LAST_PID, "w") as f:
            f.write(str(pid - 1))
        process = subprocess.Popen(SLEEPER, start_new_session=True, env={"PATH": "/usr/bin"})
        if process.pid == pid:
            return process
        process.kill()
        process.wait()
    pytest.skip(f"pid {pid} was always taken by another process first")


def test_a_reused_pgid_is_not_evidence_the_marker_and_ancestry_are(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip(f"needs root to force pid reuse through {NS_LAST_PID}")
    run_id = "crashed-run-1"
    started_wall = time.time() - 1
    # The lost run's root: a session leader that then died and was reaped (as with the daemon).
    root = subprocess.Popen(SLEEPER, start_new_session=True, env={RUN_ID_VAR: run_id})
    ticks = start_ticks(root.pid)
    root.kill()
    root.wait()
    state = tmp_path / "state"
    journals = state / "journals"
    journals.mkdir(parents=True)
    meta = Meta(
        run_id=run_id,
        pid=root.pid,
        pgid=root.pid,
        argv=tuple(SLEEPER),
        started_wall=started_wall,
        boot_id=boot_id(),
        quota_bytes=1 << 20,
        quota_policy="block",
        root_start_ticks=ticks,
    )
    journal = Journal.create(str(journals / f"{run_id}{SUFFIX}"), meta, JournalConfig())
    assert journal._fd is not None
    os.close(journal._fd)  # the daemon died: no completion, the lock went with it

    # Reuse is never within the clock tick the root started in (the daemon had to die and a
    # new one start in between); here it could be, so let a few ticks pass.
    time.sleep(3 / os.sysconf("SC_CLK_TCK"))
    unrelated = spawn_with_pid(root.pid)
    assert start_ticks(unrelated.pid) != ticks
    # A real leftover (it kept the marker, left the session), and its child that dropped its
    # whole environment: only ancestry ties that one to the run.
    leftover = subprocess.Popen(
        [
            "sh",
            "-c",
            f"env -i {sys.executable} -c 'import time; time.sleep(120)' & echo $!; wait",
        ],
        start_new_session=True,
        env={RUN_ID_VAR: run_id, "PATH": os.environ["PATH"]},
        stdout=subprocess.PIPE,
    )
    assert leftover.stdout is not None
    grandchild = int(leftover.stdout.readline())
    try:
        assert os.getsid(unrelated.pid) == meta.pgid
        daemon_runs = DurableRuns(ServerConfig(state_dir=str(state)), "test")
        trio.run(daemon_runs.recover)
        assert alive(unrelated.pid), "an unrelated process with the run's old sid was killed"
        assert leftover.wait(10) == -9
        for _ in range(1000):  # the grandchild is not ours to wait for: watch /proc
            if not alive(grandchild):
                break
            time.sleep(0.01)
        assert not alive(grandchild)
        recovered = daemon_runs.runs.get(run_id)
        assert recovered is not None
        assert recovered.journal.completed is not None
    finally:
        for process in (unrelated, leftover):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, 9)
