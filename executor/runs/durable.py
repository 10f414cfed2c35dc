"""Durable runs: their runners live in the daemon's nursery and their pumps write journals.

Theory of operation
-------------------
Trio cannot move a task between nurseries, so a run's lifetime is chosen when it starts.  A
durable run's runner (supervision's ``run_process``, unchanged) and its pump (``OutputPump``,
unchanged) are started in the daemon's nursery; the pump's sink is the run's ``Journal`` rather
than a WebSocket.  One runner, one pump, two kinds of sink.  Connections never feed a durable
run's pump: they *attach*, each with its own cursor on the journal (attach.py), so a slow or
absent client never slows the child; only the journal quota can (policy "block").

In block mode the pump waits for room forever, so two things unblock it: the run ending (its
processes are gone: a task waits for ``Run.wait_ending``) and a CANCEL (the control handler
unblocks before cancelling, since a PAUSE stuck behind the full channel holds the run's control
lock).

A durable run belongs to the identity that started it (``Meta.owner``; journals written before
owners were recorded belong to "local", the identity of unauthenticated loopback clients).
``visible`` answers for one identity: its own runs, or every run for an admin; a run that is not
visible is, to that client, a run that does not exist.

At start, ``recover`` reads every journal in the state directory.  A journal without a
completion whose lock is free belongs to a run that died with an earlier daemon: its leftover
processes are killed (supervision/leftovers.py) and a ``Lost`` completion is appended.  Journals
locked by another live daemon sharing the directory are left alone.

Retention compacts completed journals (events removed, META and completion kept, so the run is
still listed and an attach into the removed range gets -32009) once they are older than
``retention_seconds``, and oldest first while completed journals exceed ``retention_bytes``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import time
from typing import TYPE_CHECKING

import structlog
import trio

from cc_executor.executor.runs.admission import start_runner
from cc_executor.executor.runs.wire import outcome_fields
from cc_executor.protocol import JSON, ExecuteParams
from cc_executor.supervision import (
    Completed,
    CompletedEvent,
    InvalidTransition,
    Lost,
    OutputPump,
    Run,
    RunEvent,
    SpawnError,
    SpawnSpec,
)
from cc_executor.supervision.journal import Journal, JournalError, Meta, boot_id, compact
from cc_executor.supervision.leftovers import kill_leftovers

if TYPE_CHECKING:
    from cc_executor.executor.config.server import ServerConfig
    from cc_executor.executor.daemon.daemon import Daemon
    from cc_executor.executor.transport.frontdoor import Identity

log = structlog.get_logger()

LOST_REASON = "daemon restarted while the run was live"
LEGACY_OWNER = "local"  # the owner of journals that predate owners
SUFFIX = ".journal"


class DurableRun:
    """A durable run as the daemon holds it: its journal, and while live its Run and pump."""

    def __init__(
        self, journal: Journal, run: Run | None = None, pump: OutputPump | None = None
    ) -> None:
        self.run_id = journal.meta.run_id
        self.owner = journal.meta.owner or LEGACY_OWNER
        self.journal = journal
        self.run = run
        self.pump = pump
        self.done = trio.Event()  # the journal is finished: nothing more will be appended
        self.ended_wall: float | None = None  # when it completed, for retention
        if run is None:
            self.done.set()
            with contextlib.suppress(OSError):
                self.ended_wall = os.stat(journal.path).st_mtime

    @property
    def live(self) -> bool:
        return self.run is not None and not self.done.is_set()

    def status(self, now: float) -> dict[str, JSON]:
        """The run as ``status`` and ``list`` show it."""
        meta, journal = self.journal.meta, self.journal
        completed = journal.completed
        run = self.run
        result: dict[str, JSON] = {
            "run": self.run_id,
            "durable": True,
            "owner": self.owner,
            "state": run.state.value if run is not None and completed is None else "completed",
            "pid": meta.pid,
            "pgid": meta.pgid,
            "argv": list(meta.argv),
            "started": meta.started_wall,
            "last_seq": journal.last_seq,
        }
        if completed is not None:
            result["elapsed"] = round(completed.completed.duration, 6)
            result["stdout_bytes"] = completed.completed.stdout_bytes
            result["stderr_bytes"] = completed.completed.stderr_bytes
            result.update(outcome_fields(completed.completed.outcome))
        elif run is not None:
            result["elapsed"] = round(now - run.started_at, 6)
            result["stdout_bytes"] = run.stdout_bytes
            result["stderr_bytes"] = run.stderr_bytes
        result["journal"] = self.journal_info()
        return result

    def journal_info(self) -> dict[str, JSON]:
        journal = self.journal
        removed: JSON = None
        if journal.removed is not None:
            removed = {"first": journal.removed.first, "last": journal.removed.last}
        return {
            "bytes": journal.size,
            "quota_bytes": journal.meta.quota_bytes,
            "quota_policy": journal.meta.quota_policy,
            "blocked": journal.blocked,
            "gap_from_seq": None if journal.gap is None else journal.gap.seq,
            "removed": removed,
        }


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


class DurableRuns:
    """Every durable run the daemon knows: live ones, and journals kept on disk."""

    def __init__(self, config: ServerConfig, instance: str) -> None:
        self.config = config
        self.instance = instance
        self.directory = os.path.join(config.state_dir, "journals")
        self.runs: dict[str, DurableRun] = {}
        self._changed = trio.Event()

    def get(self, run_id: str) -> DurableRun | None:
        return self.runs.get(run_id)

    def visible(self, run_id: str, identity: Identity) -> DurableRun | None:
        """The run, if `identity` may see it: its owner, or an admin."""
        durable = self.runs.get(run_id)
        if durable is None or not (identity.admin or durable.owner == identity.name):
            return None
        return durable

    def visible_runs(self, identity: Identity) -> list[DurableRun]:
        return [d for d in self.runs.values() if identity.admin or d.owner == identity.name]

    def new_run_id(self) -> str:
        """Globally unique, and saying which instance holds the run."""
        return f"{_safe(self.instance)}-{secrets.token_hex(6)}"

    @property
    def live_count(self) -> int:
        return sum(1 for durable in self.runs.values() if durable.live)

    # -- restart ---------------------------------------------------------------------------

    async def recover(self) -> None:
        """Load every journal; complete runs that died with an earlier daemon as lost."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(SUFFIX):
                continue
            path = os.path.join(self.directory, name)
            try:
                journal = Journal.open(path, self.config.journal)
            except (JournalError, OSError, ValueError, KeyError) as exc:
                log.warning("journal.unreadable", path=path, error=str(exc))
                continue
            if journal is None:
                log.info("journal.held_elsewhere", path=path)
                continue
            if journal.truncated_bytes:
                log.warning("journal.torn_tail_truncated", path=path, bytes=journal.truncated_bytes)
            if journal.completed is None:
                await self._complete_lost(journal)
            self.runs[journal.meta.run_id] = DurableRun(journal)
        log.info("durable.recovered", journals=len(self.runs))

    async def _complete_lost(self, journal: Journal) -> None:
        meta = journal.meta
        killed: list[int] = []
        if meta.boot_id == boot_id():
            killed = await trio.to_thread.run_sync(
                kill_leftovers, meta.run_id, meta.pgid, meta.started_wall
            )
        completed = Completed(
            outcome=Lost(LOST_REASON),
            stdout_bytes=journal.stdout_bytes,
            stderr_bytes=journal.stderr_bytes,
            duration=max(0.0, time.time() - meta.started_wall),
        )
        await journal.append_completion(
            CompletedEvent(seq=journal.last_seq + 1, completed=completed)
        )
        log.warning("run.lost", run=meta.run_id, reason=LOST_REASON, killed=killed)

    # -- live runs ---------------------------------------------------------------------------

    async def start(
        self,
        daemon: Daemon,
        nursery: trio.Nursery,
        spec: SpawnSpec,
        params: ExecuteParams,
        owner: str,
    ) -> DurableRun:
        """Spawn a durable run in `nursery` (the daemon's) with its journal and pump.

        Raises:
            SpawnError: the process could not be started, or its journal not created.
        """
        sup = self.config.supervision
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        run, receive = await start_runner(
            nursery,
            spec,
            sup,
            daemon.registry,
            timeout=params.timeout,
            idle_timeout=params.idle_timeout,
        )
        meta = Meta(
            run_id=run.run_id,
            pid=run.pid,
            pgid=run.pgid,
            argv=tuple(run.argv),
            started_wall=time.time(),
            boot_id=boot_id(),
            quota_bytes=self.config.journal.quota_bytes,
            quota_policy=self.config.journal.quota_policy,
            owner=owner,
        )
        path = os.path.join(self.directory, _safe(run.run_id) + SUFFIX)
        try:
            journal = Journal.create(path, meta, self.config.journal)
        except OSError as exc:
            # Nothing may run unrecorded: end it, draining its events into nowhere.
            nursery.start_soon(self._abandon, run, receive)
            raise SpawnError(f"cannot create the run's journal: {exc.strerror or exc}") from None
        pump = OutputPump(receive, journal.deliver, sup, run.unread_bytes)
        durable = DurableRun(journal, run, pump)
        self.runs[run.run_id] = durable
        nursery.start_soon(self._pump, daemon, durable)
        nursery.start_soon(self._unblock_when_ending, durable)
        return durable

    async def _abandon(self, run: Run, receive: trio.MemoryReceiveChannel[RunEvent]) -> None:
        async def nowhere(_: object) -> None:
            raise OSError("no journal")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(OutputPump(receive, nowhere, self.config.supervision).run)
            with contextlib.suppress(InvalidTransition):
                await run.cancel("the run's journal could not be created")

    async def _pump(self, daemon: Daemon, durable: DurableRun) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(run=durable.run_id)
        assert durable.pump is not None
        try:
            await durable.pump.run()
        finally:
            with trio.move_on_after(daemon.config.connect_timeout, shield=True):
                await durable.journal.close()
            durable.ended_wall = time.time()
            durable.done.set()
            daemon.durable_finished(durable)
            self._changed.set()

    async def _unblock_when_ending(self, durable: DurableRun) -> None:
        assert durable.run is not None
        await durable.run.wait_ending()
        durable.journal.unblock()

    async def end_all(self, reason: str) -> None:
        """End every live durable run through the ladder; return once each is journaled."""

        async def end(durable: DurableRun) -> None:
            assert durable.run is not None
            durable.journal.unblock()
            with contextlib.suppress(InvalidTransition):
                await durable.run.cancel(reason)
            await durable.done.wait()

        async with trio.open_nursery() as nursery:
            for durable in list(self.runs.values()):
                if durable.live:
                    nursery.start_soon(end, durable)

    # -- retention ---------------------------------------------------------------------------

    async def run_retention(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Apply retention now, whenever a run completes, and when the next journal expires."""
        task_status.started()
        while True:
            self._changed = trio.Event()
            delay = self.sweep(time.time())
            with trio.move_on_after(delay):
                await self._changed.wait()

    def sweep(self, now: float) -> float:
        """Compact the journals retention says must go; return seconds to the next expiry."""
        kept: list[DurableRun] = []
        for durable in self.runs.values():
            journal = durable.journal
            if (
                not durable.done.is_set()
                or journal.completed is None
                or journal.removed is not None
                or journal.completed.seq <= 1
            ):
                continue
            if (durable.ended_wall or now) + self.config.retention_seconds <= now:
                self._compact(durable, "age")
            else:
                kept.append(durable)
        kept.sort(key=lambda d: d.ended_wall or now)
        total = sum(d.journal.size for d in kept)
        while kept and total > self.config.retention_bytes:
            oldest = kept.pop(0)
            total -= oldest.journal.size
            self._compact(oldest, "size")
        if not kept:
            return math.inf
        return max(
            0.0, min((d.ended_wall or now) for d in kept) + self.config.retention_seconds - now
        )

    def _compact(self, durable: DurableRun, why: str) -> None:
        before = durable.journal.size
        try:
            compact(durable.journal)
        except OSError as exc:
            log.warning("journal.compact_failed", run=durable.run_id, error=str(exc))
            return
        log.info("journal.removed", run=durable.run_id, why=why, bytes=before)
