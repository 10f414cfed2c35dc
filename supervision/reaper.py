"""Containment at the daemon level: become the child subreaper, and reap adopted orphans.

Theory of operation: with PR_SET_CHILD_SUBREAPER, a process of a run whose parent dies is
reparented to the daemon instead of init, so the daemon can still find it (tree.py) and must
reap it when it dies.  The daemon never calls waitpid(-1): that would steal the exit status of
run roots, which their runners collect through trio.  Instead it lists the children of its first
thread, where the kernel puts every orphan it adopts (tree.py), and reaps, one pid at a time,
the zombies that are not registered roots.  This also makes the daemon a correct PID 1 in a
container.  SIGCHLD, which starts a pass, comes from trio's receiver, or from
``signals.ForwardedSignals`` when the event loop is not on the main thread.

The reaper also owns what a ladder could not confirm (registry.py, ``unconfirmed``): a run that
ended while /proc could not be read (EMFILE) was signalled by process group only, so a
descendant that left the group (setsid) may still live, unseen.  Its root is reaped by then,
so only the run's marker (CCX_RUN_ID, inherited by everything it started) proves a process
the run's (leftovers.py, as after a daemon crash); the sweep reads all of /proc for it, kills
what it finds, and repeats until a read finds nothing — retried with the same backoff while
/proc cannot be read, given up (an error) for a process that SIGKILL does not end, and tried
once more as the reaper ends.

It also owns the orphans that carry no mark of any run (``setsid env -i``: tree.py) and that
no ending run could claim because another live run may have started them (registry.py): after
each run ends while one waits, the sweep kills every such orphan (with its descendants) that no
live run can own any more — none whose root started before it.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal

import structlog
import trio

from cc_executor.supervision import procfs
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.leftovers import find_leftovers
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.signals import SignalReceiver

log = structlog.get_logger()

# From <linux/prctl.h>.
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: object) -> int:
    result: int = _libc.prctl(option, arg, 0, 0, 0)
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def enable_subreaper(enabled: bool = True) -> bool:
    """Make this process the child subreaper (or stop being one); False if the kernel refused."""
    try:
        _prctl(PR_SET_CHILD_SUBREAPER, int(enabled))
    except OSError as exc:
        log.warning("subreaper.unavailable", error=str(exc))
        return False
    return True


def is_subreaper() -> bool:
    """Whether orphaned descendants are currently reparented to this process."""
    value = ctypes.c_int(0)
    try:
        _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value))
    except OSError:
        return False
    return value.value != 0


def reap_orphans(registry: RunRegistry) -> list[int]:
    """Reap every zombie child of this process that is not a registered run root.

    Returns the reaped pids.  Does nothing while a spawn is in flight (see registry.py); the
    reaper task looks again once spawns have settled.  Short of file descriptors (/proc cannot
    be listed) it reaps nothing and says so in the log; the reaper task tries again.
    """
    return _reap_pass(registry)[0]


def _reap_pass(registry: RunRegistry) -> tuple[list[int], bool]:
    """The pids reaped, and whether every child could be looked at."""
    if registry.spawn_in_flight:
        return [], True
    reaped: list[int] = []
    complete = True
    try:
        # Roots among them (all of a burst's, with the event loop on the first thread) go in
        # one set operation.
        for pid in procfs.leader_children(os.getpid()) - registry.unreaped_roots():
            stat = procfs.read_stat(pid)
            if stat is None or not stat.is_zombie:
                continue
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                reaped.append(pid)
    except procfs.ProcfsExhausted as exc:
        log.warning("reaper.procfs_exhausted", error=str(exc))
        complete = False
    if reaped:
        log.debug("reaper.reaped", pids=reaped)
    return reaped, complete


# Sweeps of one run that find (and SIGKILL) processes before it is given up: what SIGKILL
# does not end is stuck in the kernel (state D), as for the ladder's survivors.
SWEEP_KILLS = 10


def sweep_unconfirmed(registry: RunRegistry, kills: dict[str, int]) -> bool:
    """Kill what is left of every unconfirmed run; True once none is left to look for.

    `kills` counts, per run, the sweeps that found some: past ``SWEEP_KILLS`` the run is
    given up (``reaper.leftovers_survived``, an error).

    Raises:
        ProcfsExhausted: /proc could not be read (no file descriptor).
    """
    for run_id in sorted(registry.unconfirmed):
        pids = find_leftovers(run_id, None, None)
        if not pids or kills.get(run_id, 0) >= SWEEP_KILLS:
            if pids:
                log.error("reaper.leftovers_survived", run=run_id, pids=sorted(pids))
            registry.confirmed(run_id)
            kills.pop(run_id, None)
            continue
        kills[run_id] = kills.get(run_id, 0) + 1
        log.warning("reaper.leftovers_killed", run=run_id, pids=sorted(pids))
        for pid in sorted(pids):
            # Gone already, or not ours to kill (a set-uid program that kept the marker):
            # either way the next sweep sees it, and SWEEP_KILLS bounds the looking.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return not registry.unconfirmed


def sweep_unowned(registry: RunRegistry) -> bool:
    """SIGKILL the unmarked orphans (with their descendants) that scans left for the runs that
    may own them, once no live run can (the module doc); True once none was left to kill.

    Raises:
        ProcfsExhausted: /proc could not be read (no file descriptor).
    """
    if registry.spawn_in_flight:
        return False  # a root not registered yet: look again
    self_pid = os.getpid()
    earliest: int | None = None  # the earliest start of a live run's root
    for run in registry.runs():
        if not run.root_reaped:
            ticks = run.start_ticks()
            earliest = 0 if ticks is None else ticks if earliest is None else min(earliest, ticks)
    doomed: set[int] = set()
    for pid, ticks in registry.unowned().items():
        stat = procfs.read_stat(pid)
        if stat is None or stat.is_zombie or stat.start_ticks != ticks or stat.ppid != self_pid:
            registry.unowned_gone(pid)  # gone (its number may be another's by now)
            continue
        if earliest is not None and earliest <= ticks:
            continue  # a live run may have started it: its end decides
        registry.unowned_gone(pid)
        stack = [pid]
        while stack:
            member = stack.pop()
            if member not in doomed:
                doomed.add(member)
                stack.extend(procfs.children(member))
    if doomed:
        log.warning("reaper.orphans_killed", pids=sorted(doomed))
        for pid in sorted(doomed):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return not doomed


async def _serve_sweeps(registry: RunRegistry, config: SupervisionConfig) -> None:
    """Sweep whenever a run is left unconfirmed, until nothing is left of any, and after a run
    ends while an unmarked orphan waits for the runs that may own it."""
    kills: dict[str, int] = {}
    while True:
        await registry.wait_unconfirmed()
        retry = config.procfs_retry_initial
        unowned_kills = 0
        while True:
            try:
                unowned_done = True
                if registry.unowned_due:
                    # Killed ones' children are orphans now: look again until none is left.
                    if sweep_unowned(registry) or unowned_kills >= SWEEP_KILLS:
                        registry.unowned_due = False
                    else:
                        unowned_kills += 1
                        unowned_done = False
                if sweep_unconfirmed(registry, kills) and unowned_done:
                    break
            except procfs.ProcfsExhausted as exc:
                log.warning("reaper.procfs_exhausted", error=str(exc))
            # Killed ones to see gone, or /proc unreadable: look again after a backoff.
            await trio.sleep(retry)
            retry = min(retry * 2, config.procfs_retry_max)


class ReaperAlreadyRunning(RuntimeError):
    """A second reaper in one process: SIGCHLD handling is process-wide."""


_reaper_running = False
DEFAULT_CONFIG = SupervisionConfig()


async def run_reaper(
    registry: RunRegistry,
    *,
    config: SupervisionConfig = DEFAULT_CONFIG,
    signals: SignalReceiver = trio.open_signal_receiver,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Reap adopted orphans on every SIGCHLD (from `signals`), for as long as the task runs.

    A pass that could not read /proc (EMFILE) is repeated after a backoff
    (config.procfs_retry_*) even if no SIGCHLD comes.

    One per process: a signal handler is process-wide, and two receivers that end in the
    wrong order would leave a dead run's handler installed.

    Raises:
        ReaperAlreadyRunning: another reaper is running in this process.
    """
    global _reaper_running
    if _reaper_running:
        raise ReaperAlreadyRunning("a reaper is already running in this process (one daemon each)")
    _reaper_running = True
    try:
        with signals(signal.SIGCHLD) as received:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_sweeps, registry, config)
                task_status.started()
                _reaped, complete = _reap_pass(registry)
                retry = config.procfs_retry_initial
                while True:
                    # Signals coalesce, so one pass per batch sees every zombie present now.
                    with trio.move_on_after(math.inf if complete else retry):
                        await received.__anext__()
                    retry = config.procfs_retry_initial if complete else retry
                    await registry.wait_spawns_settled()
                    _reaped, complete = _reap_pass(registry)
                    if not complete:
                        retry = min(retry * 2, config.procfs_retry_max)
    finally:
        _reaper_running = False
        # The daemon ends: a last look for what no ladder saw die (its sockets are closed by
        # now, so /proc can usually be read), so nothing of a run outlives the daemon.
        with contextlib.suppress(procfs.ProcfsExhausted):
            if registry.unconfirmed:
                sweep_unconfirmed(registry, {})
            if registry.unowned_due:
                sweep_unowned(registry)


DEFAULT_CONFIG = SupervisionConfig()
