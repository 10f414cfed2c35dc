"""Killing what is left of a run whose supervisor died (a daemon killed mid-run).

Theory of operation: a run's processes carry the CCX_RUN_ID marker and start in the run's
session (pgid = sid = root pid), but after the daemon died nothing pins those ids: the group's
number may have been reused by an unrelated process.  So a process is a leftover only if it
carries the run's marker, or is in the run's group or session *and* started after the run did.
Under another boot nothing of the run can be alive at all.  Found processes are SIGKILLed, and
the scan repeats (a process may have forked between a scan and its kill) a bounded number of
times.  Never adopted, never left running.
"""

from __future__ import annotations

import contextlib
import os
import signal

from cc_executor.supervision import procfs
from cc_executor.supervision.marker import marker_entry

# The start time in /proc has the resolution of the boot time in /proc/stat: one second.
START_SLACK = 2.0


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _started_at(pid: int, boot_time: float) -> float | None:
    """Wall-clock start time of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    ticks = int(fields[19])  # field 22 of stat; fields here start at field 3
    return boot_time + ticks / os.sysconf("SC_CLK_TCK")


def find_leftovers(run_id: str, pgid: int, started_wall: float) -> set[int]:
    """Live processes that belong to a run whose supervisor is gone."""
    entry = marker_entry(run_id)
    boot_time = _boot_time()
    self_pid = os.getpid()
    found: set[int] = set()
    for pid in procfs.all_pids():
        if pid == self_pid:
            continue
        stat = procfs.read_stat(pid)
        if stat is None or stat.is_zombie:
            continue
        if procfs.environ_contains(pid, entry):
            found.add(pid)
            continue
        if stat.pgrp == pgid or stat.session == pgid:
            started = _started_at(pid, boot_time)
            if started is not None and started >= started_wall - START_SLACK:
                found.add(pid)
    return found


def kill_leftovers(run_id: str, pgid: int, started_wall: float, passes: int = 10) -> list[int]:
    """SIGKILL every leftover of a run; return the pids killed."""
    killed: list[int] = []
    for _ in range(passes):
        pids = find_leftovers(run_id, pgid, started_wall)
        if not pids:
            break
        for pid in sorted(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed
