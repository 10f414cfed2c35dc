"""Signalling every process of a run, and waiting until the kernel shows the effect.

Theory of operation: a signal to the run's process group reaches every group member atomically
(the kernel restarts a fork that races with a group signal), but processes that called setsid()
or setpgid() are outside the group and must be signalled one by one.  New outsiders can appear
between an enumeration and a kill, so `drive` re-enumerates on every round and signals each
member it has not signalled yet, until every member shows the wanted state.  Stopped/continued
states have no event: they are polled from /proc with a backoff and a deadline.  Exits do have
an event (a pidfd becomes readable), so waiting for "gone" blocks on pidfds instead of polling.

Every signal is preceded by a scan: a group signal that ends (or stops) a parent moves its
children out of the tree (to the daemon, the subreaper), and one that had left the group and
cleared its environment (``setsid env -i``) then shows nothing that ties it to the run.  Found
before, it is one of the run's remembered members (tree.py) wherever it goes.

Short of file descriptors, /proc cannot be read (procfs.ProcfsExhausted): the group signal
still goes out (killpg needs no descriptor), and `drive` reads again with a bounded backoff
until its deadline; members it could not see are reported by the group id.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
from collections.abc import Iterable
from typing import Protocol

import structlog
import trio

from cc_executor.supervision import procfs
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.procfs import ProcfsExhausted

log = structlog.get_logger()


class Target(Protocol):
    """A run as seen by the signalling code."""

    @property
    def pgid(self) -> int: ...

    def members(self, *, full: bool = False) -> set[int]: ...


class Until(enum.Enum):
    """The state `drive` waits for on every member."""

    STOPPED = "stopped"
    CONTINUED = "continued"
    GONE = "gone"


def _reached(pid: int, until: Until) -> bool:
    stat = procfs.read_stat(pid)
    if stat is None or stat.is_zombie:
        return True
    if until is Until.STOPPED:
        # A vfork() parent whose child was stopped before its exec cannot run either.
        return stat.state in ("T", "t") or (stat.state == "D" and procfs.in_vfork_wait(pid))
    if until is Until.CONTINUED:
        return stat.state != "T"
    return False


def kill_group(pgid: int, sig: int) -> None:
    """Signal a process group; a group that no longer exists is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_pids(pids: Iterable[int], sig: int) -> None:
    """Signal processes one by one; those already gone are skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def signal_outsiders(target: Target, pids: Iterable[int], sig: int) -> None:
    """Signal the given members that are outside the run's process group."""
    outsiders = []
    for pid in pids:
        stat = procfs.read_stat(pid)
        if stat is not None and stat.pgrp != target.pgid:
            outsiders.append(pid)
    kill_pids(outsiders, sig)


def signal_members(target: Target, sig: int) -> None:
    """Signal the group, then every member outside it that /proc shows right now.

    Short of file descriptors only the group is signalled (logged): that needs none.
    """
    try:
        before = target.members()  # remembered by the run, wherever the signal moves them
    except ProcfsExhausted:
        before = set()
    kill_group(target.pgid, sig)
    try:
        signal_outsiders(target, before | target.members(), sig)
    except ProcfsExhausted as exc:
        log.warning("signal.outsiders_unreached", pgid=target.pgid, signal=sig, error=str(exc))


async def wait_exited(pids: Iterable[int], config: SupervisionConfig) -> None:
    """Return once every given process has exited (zombies count as exited)."""
    fds: list[int] = []
    unwatchable = False
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                continue
            except OSError:
                unwatchable = True
        for fd in fds:
            await trio.lowlevel.wait_readable(fd)
        if unwatchable:
            # No pidfd for some process: the caller re-checks /proc; pace it like a state poll.
            await trio.sleep(config.state_poll_max)
    finally:
        for fd in fds:
            trio.lowlevel.notify_closing(fd)
            os.close(fd)


async def drive(
    target: Target,
    sig: int,
    until: Until,
    *,
    deadline: float,
    config: SupervisionConfig,
    follow_with: int | None = None,
) -> set[int]:
    """Send `sig` to every member of the run until each one has reached `until`.

    `follow_with` is sent right after `sig` to everything `sig` went to (SIGCONT after SIGTERM,
    so that a stopped process can act on the SIGTERM).

    Returns:
        The members that had not reached the state at the deadline (empty on success).
    """
    try:
        # Remembered by the run (module doc); nothing alive at all: nothing can become alive.
        if not target.members() and until is Until.GONE:
            return set()
    except ProcfsExhausted:
        pass  # the rounds below retry
    kill_group(target.pgid, sig)
    if follow_with is not None:
        kill_group(target.pgid, follow_with)
    signalled: set[int] = set()
    delay = config.state_poll_initial
    retry = config.procfs_retry_initial
    confirmed_full = False
    while True:
        try:
            pending, confirmed_full = _round(
                target, sig, until, follow_with, signalled, confirmed_full=confirmed_full
            )
        except ProcfsExhausted as exc:
            log.warning("signal.procfs_exhausted", pgid=target.pgid, error=str(exc))
            if trio.current_time() >= deadline:
                return {target.pgid}  # unconfirmed: the group stands for what was not seen
            with trio.move_on_at(deadline):
                await trio.sleep(retry)
            retry = min(retry * 2, config.procfs_retry_max)
            continue
        if not pending:
            return set()
        now = trio.current_time()
        if now >= deadline:
            return pending
        with trio.move_on_at(deadline):
            if until is Until.GONE:
                await wait_exited(pending, config)
            else:
                await trio.sleep(delay)
                delay = min(delay * 2, config.state_poll_max)


def _round(
    target: Target,
    sig: int,
    until: Until,
    follow_with: int | None,
    signalled: set[int],
    *,
    confirmed_full: bool,
) -> tuple[set[int], bool]:
    """Signal members not signalled yet; return those that have not reached `until`."""
    members = target.members()
    new = members - signalled
    signal_outsiders(target, new, sig)
    if follow_with is not None:
        signal_outsiders(target, new, follow_with)
    signalled |= new
    pending = {pid for pid in members if not _reached(pid, until)}
    if not pending and until is Until.GONE and not confirmed_full and members:
        # Everything seen has gone; a member may have forked just before it went, so look
        # once more (exhaustively) before declaring the run gone.  A scan that saw no live
        # member at all needs no second look: nothing was left that could fork.
        members = target.members(full=True)
        new = members - signalled
        signal_outsiders(target, new, sig)
        if follow_with is not None:
            signal_outsiders(target, new, follow_with)
        signalled |= new
        return set(members), True
    return pending, confirmed_full


def resolve_signal(sig: str | int) -> signal.Signals:
    """Accept 15, "TERM" or "SIGTERM".

    Raises:
        ValueError: not a known signal.
    """
    if isinstance(sig, int):
        return signal.Signals(sig)
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise ValueError(f"unknown signal: {sig}") from None
