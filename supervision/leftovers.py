"""Killing what is left of a run whose supervisor died (a daemon killed mid-run).

Theory of operation: after the daemon died nothing pins a run's ids: its root may be reaped
and its pid, process group and session numbers reused by unrelated processes.  So a process
is killed only on positive evidence that it is the run's:
  * it carries the run's marker (CCX_RUN_ID=<run id>, inherited by everything the run started)
    — or, for every run of a daemon that died (executor/daemon/record.py), that daemon's
    (CCX_DAEMON=<its id>, which all its runs carry);
  * it is the root itself: the recorded pid *and* the recorded start time (clock ticks after
    boot, /proc/<pid>/stat field 22) both match — unless the root re-executed itself as a
    daemon of its own (``ccx serve`` as the run's command: its environment carries
    CCX_DAEMON_PID=<its pid>);
  * it descends (parent by parent, through live processes) from a process proven so, and
    started no earlier than the run — unless it carries the marker of another daemon than
    the one it descends from: a daemon started inside a run re-executes itself with a marker
    of its own (executor/daemon/marking.py), and it and its runs are that daemon's, not the
    run's.
Sharing the run's process group or session proves nothing (pid reuse).  Under another boot
nothing of the run can be alive at all (the caller checks the boot id).  Found processes are
SIGKILLed, and the scan repeats (a process may fork between a scan and its kill) a bounded
number of times.  Never adopted, never left running.  Short of file descriptors, a scan is
retried with a backoff, a bounded number of times; then ProcfsExhausted goes to the caller.

One scan of /proc reads every process's stat and environment once, and attributes each to
any number of owners at once: the leftovers of many dead daemons cost one scan, not one each
(`kill_daemons_leftovers`).  This runs in a worker thread (recovery), so it may sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Collection, Hashable
from typing import TypeVar

import attrs

from cc_executor.supervision import procfs
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.marker import DAEMON_PID_VAR, DAEMON_VAR, marker_entry
from cc_executor.supervision.procfs import ProcStat

# The start time in /proc has a resolution of one clock tick, and time.time() at start is
# taken just after the spawn: allow this much before it when no root start time was recorded.
START_SLACK = 2.0

K = TypeVar("K", bound=Hashable)

_DAEMON_KEY = b"\0" + DAEMON_VAR.encode() + b"="


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


@attrs.frozen
class Seen:
    """One live process of a scan: its stat, and its environment (b"" when unreadable)."""

    stat: ProcStat
    environ: bytes

    def carries(self, entry: bytes) -> bool:
        return b"\0" + entry + b"\0" in b"\0" + self.environ + b"\0"

    @property
    def is_daemon(self) -> bool:
        """Whether it is a daemon that re-executed itself with an id of its own."""
        return bool(self.daemons) and self.carries(f"{DAEMON_PID_VAR}={self.stat.pid}".encode())

    @property
    def daemons(self) -> frozenset[str]:
        """The daemon ids of its CCX_DAEMON entries (none, usually one)."""
        found: set[str] = set()
        text = b"\0" + self.environ
        at = text.find(_DAEMON_KEY)
        while at >= 0:
            start = at + len(_DAEMON_KEY)
            end = text.find(b"\0", start)
            found.add(text[start : end if end >= 0 else len(text)].decode(errors="replace"))
            at = text.find(_DAEMON_KEY, start)
        return frozenset(found)


def scan() -> dict[int, Seen]:
    """Every live process but this one, with its environment: one pass over /proc.

    Raises:
        ProcfsExhausted: /proc could not be read (no file descriptor).
    """
    self_pid = os.getpid()
    seen: dict[int, Seen] = {}
    for candidate in procfs.all_pids():
        if candidate == self_pid:
            continue
        stat = procfs.read_stat(candidate)
        if stat is None or stat.is_zombie:
            continue
        seen[candidate] = Seen(stat, procfs.read_environ(candidate) or b"")
    return seen


def attribute(
    seen: dict[int, Seen], seeds: dict[int, str | None], not_before: int = 0
) -> dict[int, str | None]:
    """`seeds` (pid: the daemon it is proven to be of, None if unknown) and every process that
    descends from one, started no earlier than its parent and than `not_before`, and carries
    no other daemon's marker (the module docstring); each with its daemon."""
    children: dict[int, list[int]] = {}
    for pid, each in seen.items():
        children.setdefault(each.stat.ppid, []).append(pid)
    owners = {pid: owner for pid, owner in seeds.items() if pid in seen}
    stack = list(owners)
    while stack:
        parent = stack.pop()
        owner = owners[parent]
        floor = max(not_before, seen[parent].stat.start_ticks)
        for child in children.get(parent, ()):
            if child in owners or seen[child].stat.start_ticks < floor:
                continue
            own = seen[child].daemons
            if own and owner is not None and owner not in own:
                continue  # another daemon, or one of its runs
            owners[child] = owner if owner is not None else min(own, default=None)
            stack.append(child)
    return owners


def find_leftovers(
    run_id: str, pid: int | None, started_wall: float | None, *, root_start_ticks: int | None = None
) -> set[int]:
    """Live processes proven (see the module docstring) to belong to a run whose supervisor is
    gone; `pid` is the run's root (= its pgid and sid).  Without `pid` and `started_wall` (its
    journal's META is lost) only the marker proves, and descent from a process it proved.

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
    seen = scan()
    entry = marker_entry(run_id)
    seeds = {p: min(s.daemons, default=None) for p, s in seen.items() if s.carries(entry)}
    root = None if pid is None else seen.get(pid)
    if (
        root is not None
        and root_start_ticks is not None
        and root.stat.start_ticks == root_start_ticks
        and not root.is_daemon
    ):
        seeds.setdefault(root.stat.pid, min(root.daemons, default=None))
    return set(attribute(seen, seeds, not_before))


def find_daemons_leftovers(daemon_ids: Collection[str]) -> dict[str, set[int]]:
    """For each of `daemon_ids`, the live processes carrying its marker and their later
    descendants (the module docstring), from one scan of /proc.

    Raises:
        ProcfsExhausted: /proc could not be read (no file descriptor).
    """
    wanted = frozenset(daemon_ids)
    seen = scan()
    seeds: dict[int, str | None] = {}
    for pid, each in seen.items():
        mine = each.daemons & wanted
        if mine:
            seeds[pid] = min(mine)
    found: dict[str, set[int]] = {daemon_id: set() for daemon_id in wanted}
    for pid, owner in attribute(seen, seeds).items():
        assert owner is not None
        found[owner].add(pid)
    return found


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

    def find() -> dict[str, set[int]]:
        return {
            run_id: find_leftovers(run_id, pid, started_wall, root_start_ticks=root_start_ticks)
        }

    killed, _scans = kill_found(find, config=config, passes=passes)
    return killed.get(run_id, [])


def kill_daemons_leftovers(
    daemon_ids: Collection[str], *, config: SupervisionConfig | None = None, passes: int = 10
) -> tuple[dict[str, list[int]], int]:
    """SIGKILL what is left of the runs of each of `daemon_ids` (`find_daemons_leftovers`);
    return the pids killed for each, and how many scans of /proc it took (one when none is
    found, else one more for each pass that found some).

    Raises:
        ProcfsExhausted: /proc stayed unreadable through every retry.
    """
    return kill_found(lambda: find_daemons_leftovers(daemon_ids), config=config, passes=passes)


def kill_found(
    find: Callable[[], dict[K, set[int]]],
    *,
    config: SupervisionConfig | None = None,
    passes: int = 10,
) -> tuple[dict[K, list[int]], int]:
    """SIGKILL what `find` (one scan) finds, again while it finds some, at most `passes` times;
    the pids killed for each key, and the number of scans.

    Raises:
        ProcfsExhausted: /proc stayed unreadable through every retry.
    """
    config = config or SupervisionConfig()
    killed: dict[K, list[int]] = {}
    retry = config.procfs_retry_initial
    attempts = config.procfs_retries
    scans = 0
    for _ in range(passes):
        try:
            scans += 1
            found = find()
        except procfs.ProcfsExhausted:
            attempts -= 1
            if attempts <= 0:
                raise
            time.sleep(retry)
            retry = min(retry * 2, config.procfs_retry_max)
            continue
        for key in found:
            killed.setdefault(key, [])
        if not any(found.values()):
            break
        for key, pids in found.items():
            for leftover in sorted(pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover, signal.SIGKILL)
                    if leftover not in killed[key]:
                        killed[key].append(leftover)
    return killed, scans
