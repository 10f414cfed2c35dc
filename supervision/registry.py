"""The run table: live runs by id, and the set of root pids the reaper must leave alone.

Theory of operation: the daemon reaps every child that is not a run root (orphans reparented
to it as child subreaper), while each runner reaps its own root (spawn.Child).  A root only
becomes known once its spawn has returned and registered it, so while any spawn is in flight
the reaper cannot tell a fresh root from an orphan: `spawn_in_flight` tells it to wait, and
`wait_spawns_settled()` tells it when to look again.

A run whose ladder could not see every member gone (no descriptor to read /proc with, or a
process stuck in the kernel) still completes; its run id is kept as *unconfirmed* until the
reaper's sweep (reaper.py) has read /proc and killed whatever still carries its marker.

An orphan that carries no mark of any run (tree.py) is ended by the run that alone can have
started it; while more live runs can have, it waits for them: the scan that finds it so says
`unowned_seen`, and once such a run has ended the reaper's sweep kills the unmarked orphans
that no live run can own any more.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio

from cc_executor.supervision.errors import DuplicateRun

if TYPE_CHECKING:
    from cc_executor.supervision.run import Run


class RunRegistry:
    """Live runs by run id (a run leaves the table when its runner finishes)."""

    def __init__(self, daemon_id: str | None = None) -> None:
        # The daemon's id, which every process of its runs carries (marker.DAEMON_VAR).
        self.daemon_id = daemon_id
        self._runs: dict[str, Run] = {}
        # The run whose root has each pid (a reaped root's number may be reused by a new run,
        # which then takes the entry: a reaped root is no root to protect any more).
        self._by_pid: dict[int, Run] = {}
        # The pids of roots not reaped yet, kept as a set so that a scan of the daemon's
        # children can subtract them in one C-level set operation (a burst of N runs ending
        # made N scans of up to N children each: a per-pid Python check per child was the
        # largest part of a run's end).
        self._unreaped: set[int] = set()
        self._reserved: set[str] = set()
        self._settled = trio.Event()
        self._settled.set()
        self._unconfirmed: set[str] = set()
        self._sweep_due = trio.Event()
        # Unmarked orphans waiting for the end of every run that may own them (module doc):
        # pid -> start time; and whether a run has ended since one was seen.
        self._unowned: dict[int, int] = {}
        self.unowned_due = False

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._runs or run_id in self._reserved

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def runs(self) -> list[Run]:
        return list(self._runs.values())

    def root_pids(self) -> frozenset[int]:
        """Pids the reaper must not reap: roots whose runner has not reaped them yet."""
        return frozenset(self._unreaped)

    def is_root(self, pid: int) -> bool:
        """Whether `pid` is the unreaped root of a live run (what root_pids lists), in O(1)."""
        return pid in self._unreaped

    def unreaped_roots(self) -> AbstractSet[int]:
        """The unreaped roots as a read-only live view (no copy: scans subtract it from a
        listing of children in one set operation; valid until the next await)."""
        return self._unreaped

    def root_reaped(self, run: Run) -> None:
        """The runner has reaped `run`'s root: its pid is no root to protect any more (the
        number may be reused by any process from now on)."""
        run.root_reaped = True
        if self._by_pid.get(run.pid) is run:
            self._unreaped.discard(run.pid)

    def leave_unconfirmed(self, run_id: str) -> None:
        """`run_id` ended without its ladder seeing every member gone: sweep for it later."""
        self._unconfirmed.add(run_id)
        self._sweep_due.set()

    def confirmed(self, run_id: str) -> None:
        """Nothing of `run_id` is left (a sweep read /proc and found nothing of it)."""
        self._unconfirmed.discard(run_id)

    @property
    def unconfirmed(self) -> frozenset[str]:
        """Run ids whose processes may outlive them: the sweep's to find and kill."""
        return frozenset(self._unconfirmed)

    def unowned_seen(self, pid: int, start_ticks: int) -> None:
        """A scan found an orphan with no mark of any run that more than one live run may
        own: each run that ends from now on has the reaper sweep for it."""
        self._unowned[pid] = start_ticks

    def unowned(self) -> dict[int, int]:
        """The unmarked orphans waiting for their possible owners to end (pid: start time)."""
        return dict(self._unowned)

    def unowned_gone(self, pid: int) -> None:
        """The orphan is dead, or was killed by a sweep."""
        self._unowned.pop(pid, None)

    async def wait_unconfirmed(self) -> None:
        """Return once the reaper has a sweep to make (at once if it has): a run left
        unconfirmed, or one that ended while an unmarked orphan waited (`unowned_due`)."""
        if not self._unconfirmed and not self.unowned_due:
            self._sweep_due = trio.Event()
            await self._sweep_due.wait()

    @property
    def spawn_in_flight(self) -> bool:
        return bool(self._reserved)

    async def wait_spawns_settled(self) -> None:
        """Return once no spawn is in flight."""
        await self._settled.wait()

    @contextmanager
    def spawning(self, run_id: str) -> Iterator[None]:
        """Reserve `run_id` while its root is being spawned; the run must be added inside.

        Raises:
            DuplicateRun: the id is in use.
        """
        if run_id in self:
            raise DuplicateRun(f"run id already in use: {run_id}")
        self._reserved.add(run_id)
        if self._settled.is_set():
            self._settled = trio.Event()
        try:
            yield
        finally:
            self._reserved.discard(run_id)
            if not self._reserved:
                self._settled.set()

    def add(self, run: Run) -> None:
        """Register a freshly spawned run (inside `spawning(run.run_id)`)."""
        if run.run_id in self._runs:
            raise DuplicateRun(f"run id already in use: {run.run_id}")
        self._runs[run.run_id] = run
        self._by_pid[run.pid] = run
        if not run.root_reaped:
            self._unreaped.add(run.pid)

    def remove(self, run: Run) -> None:
        if self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]
        if self._by_pid.get(run.pid) is run:
            del self._by_pid[run.pid]
            self._unreaped.discard(run.pid)
        if self._unowned:
            self.unowned_due = True
            self._sweep_due.set()
