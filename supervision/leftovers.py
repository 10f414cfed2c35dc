"""Killing what is left of a run whose supervisor died (a daemon killed mid-run).

Theory of operation: after the daemon died nothing pins a run's ids: its root may be reaped
and its pid, process group and session numbers reused by unrelated processes.  So a process
is killed only on positive evidence that it is the run's:
  * it carries the run's marker (CCX_RUN_ID=<run id>, inherited by everything the run started)
    — or, for every run of a daemon that died (executor/daemon/record.py), that daemon's
    (CCX_DAEMON=<its id>, which all its runs carry);
  * it is the root itself: the recorded pid *and* the recorded start time (clock ticks after
    boot, /proc/<pid>/stat field 22) both match;
  * it descends (parent by parent, through live processes) from a process proven so, and
    started no earlier than the run.
Sharing the run's process group or session proves nothing (pid reuse).  Under another boot
nothing of the run can be alive at all (the caller checks the boot id).  Found processes are
SIGKILLed, and the scan repeats (a process may fork between a scan and its kill) a bounded
number of times.  Never adopted, never left running.  Short of file descriptors, a scan is
retried with a backoff, a bounded number of times; then ProcfsExhausted goes to the caller.
This runs in a worker thread (recovery), so it may sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from cc_executor.supervision import procfs
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.marker import marker_entry
from cc_executor.supervision.procfs import ProcStat

# The start time in /proc has a resolution of one clock tick, and time.time() at start is
# taken just after the spawn: allow this much before it when no root start time was recorded.
START_SLACK = 2.0


def _boot_time() -> float:
    raw = procfs._read("/proc/stat") or b""
    for line in raw.splitlines():
        if line.startswith(b"btime "):
            return float(line.split()[1])
    return 0.0


def start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks after boot, or None if it cannot be seen."""
    stat = procfs.read_stat(pid)
    return None if stat is None else stat.start_ticks


def find_leftovers(
    run_id: str, pid: int | None, started_wall: float | None, *, root_start_ticks: int | None = None
) -> set[int]:
    """Live processes proven (see the module docstring) to belong to a run whose supervisor is
    gone; `pid` is the run's root (= its pgid and sid).  Without `pid` and `started_wall` (its
    journal's META is lost) only the marker proves, and descent from a process it proved.

    Raises:
        ProcfsExhausted: /proc could not be read (no file descriptor).
    """
    return find_marked(marker_entry(run_id), pid, started_wall, root_start_ticks=root_start_ticks)


def find_marked(
    entry: bytes,
    pid: int | None = None,
    started_wall: float | None = None,
    *,
    root_start_ticks: int | None = None,
) -> set[int]:
    """`find_leftovers` for any marker `entry` (b"NAME=value"): a run's, or the one every run of
    a daemon carries (marker.daemon_entry), which proves by itself and through descent.

    Raises:
        ProcfsExhausted: /proc could not be read (no file descriptor).
    """
    if started_wall is None:
        not_before = 0
    elif root_start_ticks is None:
        hertz = os.sysconf("SC_CLK_TCK")
        not_before = int((started_wall - START_SLACK - _boot_time()) * hertz)
    else:
        not_before = root_start_ticks
    self_pid = os.getpid()
    stats: dict[int, ProcStat] = {}
    for candidate in procfs.all_pids():
        stat = procfs.read_stat(candidate)
        if stat is not None and not stat.is_zombie and candidate != self_pid:
            stats[candidate] = stat
    proven = {p for p in stats if procfs.environ_contains(p, entry)}
    root = None if pid is None else stats.get(pid)
    if root is not None and root_start_ticks is not None and root.start_ticks == root_start_ticks:
        proven.add(root.pid)
    grew = True
    while grew:
        descendants = {
            p
            for p, stat in stats.items()
            if p not in proven
            and stat.ppid in proven
            and stat.start_ticks >= max(not_before, stats[stat.ppid].start_ticks)
        }
        proven |= descendants
        grew = bool(descendants)
    return proven


def kill_leftovers(
    run_id: str,
    pid: int | None,
    started_wall: float | None,
    *,
    root_start_ticks: int | None = None,
    config: SupervisionConfig | None = None,
    passes: int = 10,
) -> list[int]:
    """SIGKILL every leftover of a run; return the pids killed, each once (a process still
    dying of its SIGKILL is seen, and signalled, again by the next pass).

    Raises:
        ProcfsExhausted: /proc stayed unreadable through every retry.
    """
    return kill_marked(
        marker_entry(run_id),
        pid,
        started_wall,
        root_start_ticks=root_start_ticks,
        config=config,
        passes=passes,
    )


def kill_marked(
    entry: bytes,
    pid: int | None = None,
    started_wall: float | None = None,
    *,
    root_start_ticks: int | None = None,
    config: SupervisionConfig | None = None,
    passes: int = 10,
) -> list[int]:
    """`kill_leftovers` for any marker `entry` (see `find_marked`).

    Raises:
        ProcfsExhausted: /proc stayed unreadable through every retry.
    """
    config = config or SupervisionConfig()
    killed: list[int] = []
    retry = config.procfs_retry_initial
    attempts = config.procfs_retries
    for _ in range(passes):
        try:
            pids = find_marked(entry, pid, started_wall, root_start_ticks=root_start_ticks)
        except procfs.ProcfsExhausted:
            attempts -= 1
            if attempts <= 0:
                raise
            time.sleep(retry)
            retry = min(retry * 2, config.procfs_retry_max)
            continue
        if not pids:
            break
        for leftover in sorted(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
                if leftover not in killed:
                    killed.append(leftover)
    return killed
