"""The daemon's table of runs: every live run, and the recently completed ones.

Theory of operation: the one start path (start.py) adds a run once it is spawned and finishes
it once its completion is recorded; nothing else changes the table.  That is where the daemon
counts runs (the drain waits for ``idle``; ``max_runs`` and ``max_runs_per_connection`` are
checked against ``admitted`` and ``admitted_from``: the live runs and the runs admitted but
not spawned yet, so that starts in flight at once cannot all pass one free place), writes the
one start and one end line per run,
and keeps the metrics of completed runs.  Completed runs stay listed (``completed_kept`` per
identity, oldest forgotten first) so ``status`` and ``list`` can show how they ended; durable
runs are listed from their journals as well (durable.py), so a durable run is kept here only
while it is live.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
import trio

from cc_executor.executor.runs.live import LiveRun

if TYPE_CHECKING:
    from cc_executor.executor.daemon.metrics import Metrics
    from cc_executor.executor.transport.frontdoor import Identity

log = structlog.get_logger()


class RunTable:
    """Runs by id, with the counts the limits and the drain need."""

    def __init__(self, metrics: Metrics, completed_kept: int) -> None:
        self._metrics = metrics
        self._completed_kept = completed_kept
        self._live: dict[str, LiveRun] = {}
        self._from: collections.Counter[str] = collections.Counter()  # live runs per origin
        self._admitting: dict[str, str | None] = {}  # run id -> origin: admitted, not spawned
        self._admitting_from: collections.Counter[str] = collections.Counter()
        self._completed: dict[str, collections.OrderedDict[str, LiveRun]] = {}
        self._idle = trio.Event()  # set while no run is live
        self._idle.set()
        self.started = 0
        self.started_by: collections.Counter[str] = collections.Counter()  # per identity name

    # -- changes (start.py only) ---------------------------------------------------------

    def admit(self, run_id: str, origin: str | None) -> None:
        """Count a run that is being spawned against the limits, until `add` or `withdraw`."""
        self._admitting[run_id] = origin
        if origin is not None:
            self._admitting_from[origin] += 1

    def withdraw(self, run_id: str) -> None:
        """An admitted run is no longer being spawned: added, or it did not start."""
        if run_id not in self._admitting:
            return
        origin = self._admitting.pop(run_id)
        if origin is not None:
            self._admitting_from[origin] -= 1
            if not self._admitting_from[origin]:
                del self._admitting_from[origin]

    def add(self, live: LiveRun, **context: object) -> None:
        """Count a spawned run in, and write its start line."""
        self.withdraw(live.run_id)  # counted as live from now on
        self._live[live.run_id] = live
        if live.origin is not None:
            self._from[live.origin] += 1
        self.started += 1
        self.started_by[live.owner.name] += 1
        self._metrics.runs_started += 1
        if self._idle.is_set():
            self._idle = trio.Event()
        run = live.run
        log.info(
            "run.start",
            run=live.run_id,
            kind=live.kind,
            argv0=run.argv[0],
            pid=run.pid,
            pgid=run.pgid,
            durable=live.durable is not None,
            **context,
        )

    def finish(self, live: LiveRun, **context: object) -> None:
        """Count a run out (its completion is recorded), and write its one summary line."""
        if self._live.pop(live.run_id, None) is None:
            return
        if live.origin is not None:
            self._from[live.origin] -= 1
            if not self._from[live.origin]:
                del self._from[live.origin]
        completion = live.completion
        run = live.run
        outcome = completion.outcome if completion is not None else "unknown"
        self._metrics.runs_completed[outcome] += 1
        self._metrics.stream_bytes["stdout"] += run.stdout_bytes
        self._metrics.stream_bytes["stderr"] += run.stderr_bytes
        self._metrics.backpressure_stalls += run.stalls
        log.info(
            "run.end",
            run=live.run_id,
            kind=live.kind,
            argv0=run.argv[0],
            outcome=outcome,
            reason=None if completion is None else completion.reason,
            timeout=None if completion is None else completion.timeout,
            rung=None if completion is None else completion.rung,
            exit_code=None if completion is None else completion.exit_code,
            signal=None if completion is None else completion.signal,
            duration=round(trio.current_time() - run.started_at, 3),
            stdout_bytes=run.stdout_bytes,
            stderr_bytes=run.stderr_bytes,
            last_seq=live.last_seq,
            durable=live.durable is not None,
            **context,
        )
        if live.durable is None:
            kept = self._completed.setdefault(live.owner.name, collections.OrderedDict())
            kept[live.run_id] = live
            while len(kept) > self._completed_kept:
                kept.popitem(last=False)
        if not self._live:
            self._idle.set()

    # -- questions -----------------------------------------------------------------------

    @property
    def live(self) -> int:
        return len(self._live)

    def live_from(self, session: str) -> int:
        """Live runs started by `session` (durable ones included)."""
        return self._from[session]

    @property
    def admitted(self) -> int:
        """Live runs and runs being spawned: what `max_runs` counts."""
        return len(self._live) + len(self._admitting)

    def admitted_from(self, session: str) -> int:
        """`session`'s live runs and runs being spawned: what `max_runs_per_connection` counts."""
        return self._from[session] + self._admitting_from[session]

    def live_runs(self) -> Iterator[LiveRun]:
        return iter(list(self._live.values()))

    def get(self, run_id: str) -> LiveRun | None:
        """A live or recently completed run."""
        live = self._live.get(run_id)
        if live is not None:
            return live
        for kept in self._completed.values():
            if run_id in kept:
                return kept[run_id]
        return None

    def visible(self, run_id: str, identity: Identity) -> LiveRun | None:
        """The run, if `identity` may see it (its owner's, or any for an admin)."""
        live = self.get(run_id)
        return live if live is not None and live.visible_to(identity) else None

    def visible_runs(self, identity: Identity) -> list[LiveRun]:
        """Runs `identity` may see, oldest first (durable ones only while live)."""
        runs = [live for live in self._live.values() if live.visible_to(identity)]
        for owner, kept in self._completed.items():
            if identity.admin or owner == identity.name:
                runs.extend(kept.values())
        return sorted(runs, key=lambda live: live.started_wall)

    async def wait_idle(self) -> None:
        """Return once no run is live."""
        while not self._idle.is_set():
            await self._idle.wait()
