"""Durable runs: their runners live in the daemon's nursery and their pumps write journals.

Theory of operation
-------------------
Trio cannot move a task between nurseries, so a run's lifetime is chosen when it starts: the
one start path (start.py) starts a durable run's keeper — runner and pump, as for any run — in
the daemon's nursery, with the run's ``Journal`` (made by ``DurableRuns.create``) as its sink.
Connections never feed a durable run's pump: they *attach*, each with its own cursor on the
journal (attach.py), so a slow or absent client never slows the child; only the journal quota
can (policy "block").

In block mode the pump waits for room under the quota forever, so the run ending
(``Run.wait_ending``: ``Journal.run_ended``) and a CANCEL unblock it (the control handler
unblocks before cancelling: a PAUSE stuck behind the full channel holds the run's control lock).

A durable run belongs to the identity that started it (``Meta.owner``; older journals: to
"local", unauthenticated loopback clients; a journal whose META cannot be read: to nobody
known, so admins only).  ``visible`` answers for one identity: its own runs, or every run for
an admin; a run it may not see is, to that client, one that does not exist.

A failed journal write (a full disk, EIO) is the journal's to handle (supervision/journal.py):
policy "block" holds the run until the disk takes the write again or the run is cancelled —
also once its processes are gone: what it wrote and its completion wait for the disk;
policy "cancel" makes ``_watch`` end the run through the ladder with a reason naming the error.
Either way attached clients hear of it at once (``process.journal_error``), ``status`` shows it
in ``journal.error``, and the completion is still recorded (its space is reserved).

At start, ``recover`` reads every journal in the state directory (in a worker thread).  A
journal without a completion whose lock is free belongs to a run that died with an earlier
daemon: its leftovers are killed (supervision/leftovers.py: only processes proven to be the
run's) and a ``Lost`` completion is appended (after a GAP if the file's tail was cut).  A
journal whose META cannot be read is still a run, named by its file (recovery.py).  A
completion found after damage means the run completed: it is never completed again.  Journals
locked by another live daemon sharing the directory are left alone.

Retention compacts completed journals (events removed, META and completion kept, so the run is
still listed and an attach into the removed range gets -32009) once they are older than
``retention_seconds``, and oldest first while completed journals exceed ``retention_bytes``.
A compaction the disk cannot take (full, read-only) leaves the journal as it is and is tried
again with a backoff: nothing else may wake retention on a daemon that has nothing to run.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from cc_executor.executor.runs import recovery, wire
from cc_executor.executor.runs.control import cancel_quietly
from cc_executor.executor.runs.live import RunKind, shown_state
from cc_executor.protocol import JSON
from cc_executor.protocol.notices import Completion
from cc_executor.protocol.results import RunInfo
from cc_executor.protocol.server_codec import run_info_object
from cc_executor.supervision import (
    Run,
    SpawnError,
)
from cc_executor.supervision.journal import Journal, Meta, boot_id
from cc_executor.supervision.journal_retention import compact
from cc_executor.supervision.leftovers import start_ticks
from cc_executor.supervision.procfs import ProcfsExhausted

if TYPE_CHECKING:
    from cc_executor.executor.config.server import ServerConfig
    from cc_executor.executor.transport.frontdoor import Identity

log = structlog.get_logger()

LEGACY_OWNER = "local"  # the owner of journals that predate owners
RETRY_AFTER_FAILURE = 60.0  # seconds before a sweep that failed is tried again (unless a run ends)
# Seconds before a compaction the disk could not take (full, read-only) is tried again,
# doubling while it still cannot, up to the most: retention frees the disk once it can.
COMPACT_RETRY_INITIAL, COMPACT_RETRY_MAX = 1.0, 60.0


class DurableRun:
    """A durable run as the daemon holds it: its journal, and while live its Run."""

    def __init__(
        self, journal: Journal, run: Run | None = None, *, ended_wall: float | None = None
    ) -> None:
        meta = journal.meta
        # No META (damaged): the id is the file's name, the owner unknown (admins only).
        self.run_id = recovery.run_id_of(journal.path) if meta is None else meta.run_id
        self.owner = None if meta is None else meta.owner or LEGACY_OWNER
        self.journal = journal
        self.run = run
        # A Claude run's stdout is parsed for its attachments; journals do not record the kind,
        # so a run recovered after a restart replays as a command (unless a Claude session's).
        self.kind: RunKind = "claude" if wire.was_session(journal.last_notes) else "command"
        # How it ended as the wire says it (set by its keeper; None after a restart: then the
        # journal's completion is translated).
        self.completion: Completion | None = None
        self.done = trio.Event()  # the journal is finished: nothing more will be appended
        self.ended_wall = ended_wall  # when it completed, for retention
        self._info: RunInfo | None = None  # what `info` says once it can no longer change
        self._disk_bytes: int | None = None  # what its finished journal takes of the disk
        self.session_id: str | None = None  # a lost Claude session's, read from its stdout
        if run is None:
            self.done.set()
            if ended_wall is None:
                with contextlib.suppress(OSError):
                    self.ended_wall = os.stat(journal.path).st_mtime

    @property
    def live(self) -> bool:
        return self.run is not None and not self.done.is_set()

    @property
    def ids(self) -> tuple[int | None, int | None]:
        """The run's pid and pgid (None: its journal's META is lost)."""
        meta = self.journal.meta
        return (None, None) if meta is None else (meta.pid, meta.pgid)

    def final_completion(self) -> Completion | None:
        """How the run ended, if it has (from memory, else from its journal)."""
        if self.completion is not None:
            return self.completion
        recorded = self.journal.completed
        if recorded is None:
            return None
        return wire.completed(recorded.completed, *self.ids)

    def info(self, now: float) -> RunInfo:
        """The run as ``status`` and ``list`` show it; a finished run's is made once (`list`
        of thousands of journals), until retention compacts its journal (`forget_info`)."""
        if self._info is not None:
            return self._info
        info = self._make_info(now)
        if self.done.is_set() and self.journal.finished and info.completion is not None:
            self._info = info = attrs.evolve(info, wire=run_info_object(info))
        return info

    def forget_info(self) -> None:
        """The journal changed (retention compacted it): `info` is made afresh."""
        self._info = None
        self._disk_bytes = None

    def disk_bytes(self) -> int:
        """What its finished journal takes of the disk, as retention counts it: its size, or
        the blocks it has if fewer (a hole takes none: one journal extended by gigabytes of
        sparse zeros must not make retention remove the events of every other run)."""
        if self._disk_bytes is None:
            size = self.journal.size
            with contextlib.suppress(OSError):
                size = min(size, os.stat(self.journal.path, follow_symlinks=False).st_blocks * 512)
            self._disk_bytes = size
        return self._disk_bytes

    def _make_info(self, now: float) -> RunInfo:
        meta, journal = self.journal.meta, self.journal
        completion = self.final_completion()
        run = self.run
        elapsed = 0.0
        stdout_bytes, stderr_bytes = journal.stdout_bytes, journal.stderr_bytes
        if completion is not None and journal.completed is not None:
            recorded = journal.completed.completed
            elapsed = round(recorded.duration, 6)
            stdout_bytes, stderr_bytes = recorded.stdout_bytes, recorded.stderr_bytes
        elif run is not None:
            elapsed = round(now - run.started_at, 6)
            stdout_bytes, stderr_bytes = run.stdout_bytes, run.stderr_bytes
        return RunInfo(
            run=self.run_id,
            state=shown_state(run, completion),
            pid=self.ids[0],
            pgid=self.ids[1],
            argv=() if meta is None else tuple(meta.argv),
            elapsed=elapsed,
            stdout_bytes=stdout_bytes,
            stderr_bytes=stderr_bytes,
            last_seq=journal.last_seq,
            started=None if meta is None else round(meta.started_wall, 3),
            durable=True,
            owner=self.owner,
            completion=completion,
            journal=self.journal_info(),
            claude=wire.claude_summary(completion, journal.last_notes, self.session_id),
        )

    async def watch(self) -> None:
        """Until the run's processes are gone: end it on a journal fault under policy
        "cancel"; then stop the journal waiting for room under the quota (in "block" mode it
        waits forever: the rest of the output is recorded as a gap).  A failed write is still
        retried (policy "block"): only a CANCEL or the daemon stopping gives it up."""
        run, journal = self.run, self.journal
        assert run is not None
        async with trio.open_nursery() as nursery:

            async def cancel_on_fault() -> None:
                fault = await journal.wait_faulted()
                if journal.config.error_policy == "cancel":
                    journal.unblock()
                    await cancel_quietly(run, fault.reason)

            nursery.start_soon(cancel_on_fault)
            await run.wait_ending()
            journal.run_ended()
            nursery.cancel_scope.cancel()

    def journal_info(self) -> dict[str, JSON]:
        return wire.journal_object(self.journal)


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
        self._recovered_all = trio.Event()  # `recover` is over: every journal is in `runs`
        self._unreadable: list[str] = []  # journals `recover` could not read
        # After a compaction the disk could not take: when to try again, and the wait after.
        self._compact_retry_at = 0.0
        self._compact_retry = COMPACT_RETRY_INITIAL

    def is_loaded(self) -> bool:
        return self._recovered_all.is_set()

    async def loaded(self) -> None:
        """Return once the state directory is read: the daemon serves while it is (start
        does not wait for thousands of journals), so every lookup of a run waits for this."""
        if not self._recovered_all.is_set():
            await self._recovered_all.wait()

    async def visible(self, run_id: str, identity: Identity) -> DurableRun | None:
        """The run, if `identity` may see it: its owner, or an admin."""
        await self.loaded()
        durable = self.runs.get(run_id)
        return durable if durable is not None and self._sees(identity, durable) else None

    async def visible_runs(self, identity: Identity) -> list[DurableRun]:
        await self.loaded()
        return [d for d in self.runs.values() if self._sees(identity, d)]

    def _sees(self, identity: Identity, durable: DurableRun) -> bool:
        # A run whose owner is unknown (its META is lost) could be anyone's: admins only, or
        # every client of a daemon without tokens (they are all one identity, "local").
        if durable.owner is None:
            return identity.admin or self.config.tokens is None
        return identity.admin or durable.owner == identity.name

    def new_run_id(self) -> str:
        """Globally unique, and saying which instance holds the run."""
        return f"{_safe(self.instance)}-{secrets.token_hex(6)}"

    @property
    def live_count(self) -> int:
        return sum(1 for durable in self.runs.values() if durable.live)

    # -- restart ---------------------------------------------------------------------------

    async def recover(self) -> None:
        """Load every journal (recovery.py); complete runs that died with an earlier daemon
        as lost; then (or if this fails or is cancelled) lookups stop waiting (`loaded`), and
        the leftovers of runs whose journals could not be read are killed."""
        try:
            await self._recover()
        finally:
            self._recovered_all.set()
        # The runs of journals that cannot be read are not known (nothing looks them up):
        # their leftovers are killed once lookups no longer wait (recovery.kill_unopened).
        unreadable, self._unreadable = self._unreadable, []
        for path in unreadable:
            await recovery.kill_unopened(path, self.config.supervision)

    async def _recover(self) -> None:
        begun = time.time()
        await recovery.read_journals(
            self.directory, recovery.SUFFIX, self.config.journal, self._recovered
        )
        log.info(
            "durable.recovered", journals=len(self.runs), seconds=round(time.time() - begun, 3)
        )

    async def _recovered(self, opened: recovery.Opened) -> None:
        path, journal, mtime = opened
        if isinstance(journal, Exception):
            log.warning("journal.unreadable", path=path, error=str(journal))
            self._unreadable.append(path)
            return
        if journal is None:
            log.info("journal.held_elsewhere", path=path)
            return
        if journal.truncated_bytes:
            log.warning("journal.torn_tail_truncated", path=path, bytes=journal.truncated_bytes)
        run_id = recovery.run_id_of(path) if journal.meta is None else journal.meta.run_id
        session_id = None
        if journal.completed is None:
            session_id = await recovery.complete_lost(journal, run_id, self.config.supervision)
            mtime = None  # it completes now
        durable = self.runs[run_id] = DurableRun(journal, ended_wall=mtime)
        durable.session_id = session_id

    async def warm(self) -> None:
        """Make every finished run's `info` after start, a few at a time, so the first `list`
        finds them made; only an optimisation (a failure is logged, `list` makes the rest)."""
        await self.loaded()
        now = trio.current_time()
        try:
            for i, durable in enumerate(list(self.runs.values())):
                durable.info(now)
                if i % 256 == 255:
                    await trio.lowlevel.checkpoint()
        except Exception as exc:
            log.warning("durable.warm_failed", error=repr(exc), exc_info=exc)

    # -- live runs ---------------------------------------------------------------------------

    def create(self, run: Run, owner: str, kind: RunKind) -> DurableRun:
        """The journal of a durable run just spawned (its keeper then pumps into it).

        Raises:
            SpawnError: the journal could not be created (nothing may run unrecorded: the
                keeper's runner is then cancelled, which kills the run).
        """
        try:
            root_start = start_ticks(run.pid)
        except ProcfsExhausted:
            root_start = None  # recovery then goes by the run's marker only
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
            root_start_ticks=root_start,
        )
        path = os.path.join(self.directory, _safe(run.run_id) + recovery.SUFFIX)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            journal = Journal.create(path, meta, self.config.journal)
        except OSError as exc:
            raise SpawnError(f"cannot create the run's journal: {exc.strerror or exc}") from None
        durable = DurableRun(journal, run)
        durable.kind = kind
        self.runs[run.run_id] = durable
        return durable

    def finished(self, durable: DurableRun, completion: Completion | None) -> None:
        """The run's keeper has closed its journal."""
        durable.completion = completion
        durable.ended_wall = time.time()
        durable.done.set()
        self._changed.set()

    async def end_all(self, reason: str) -> None:
        """End every live durable run through the ladder; return once each is journaled."""

        async def end(durable: DurableRun) -> None:
            assert durable.run is not None
            durable.journal.unblock()
            await cancel_quietly(durable.run, reason)
            await durable.done.wait()

        async with trio.open_nursery() as nursery:
            for durable in list(self.runs.values()):
                if durable.live:
                    nursery.start_soon(end, durable)

    # -- retention ---------------------------------------------------------------------------

    async def run_retention(
        self,
        *,
        internal_error: Callable[[str], None] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Apply retention once the journals are read, whenever a run completes, and when the
        next journal expires.  A sweep that fails unexpectedly (a bug) is logged with its
        traceback and counted (`internal_error`), and retention goes on with the next one:
        retention is the daemon's housekeeping, never a reason for it to stop."""
        task_status.started()
        await self.loaded()
        while True:
            self._changed = trio.Event()
            try:
                delay = await self.sweep(time.time())
            except Exception:
                log.exception("retention.failed")
                if internal_error is not None:
                    internal_error("durable.retention")
                delay = RETRY_AFTER_FAILURE
            with trio.move_on_after(delay):
                await self._changed.wait()

    async def sweep(self, now: float) -> float:
        """Compact the journals retention says must go; return seconds to the next expiry,
        or sooner to try again a compaction the disk could not take (a full disk: the one
        time retention is most needed, and nothing else may complete to wake it)."""
        failed = False
        kept: list[DurableRun] = []
        # Over a copy: runs are created and loaded while a compaction waits for the disk.
        for durable in list(self.runs.values()):
            journal = durable.journal
            if (
                not durable.done.is_set()
                or journal.completed is None
                or journal.removed is not None
                or journal.completed.seq <= 1
            ):
                continue
            if (durable.ended_wall or now) + self.config.retention_seconds <= now:
                failed |= not await self._compact(durable, "age")
            else:
                kept.append(durable)
        kept.sort(key=lambda d: d.ended_wall or now)
        total = sum(d.disk_bytes() for d in kept)
        while kept and total > self.config.retention_bytes:
            oldest = kept.pop(0)
            total -= oldest.disk_bytes()
            failed |= not await self._compact(oldest, "size")
        delay = math.inf
        if kept:
            expiry = min((d.ended_wall or now) for d in kept) + self.config.retention_seconds
            delay = max(0.0, expiry - now)
        if not failed:
            self._compact_retry_at, self._compact_retry = 0.0, COMPACT_RETRY_INITIAL
            return delay
        if now >= self._compact_retry_at:  # the first failure, or the retry failed: back off
            self._compact_retry_at = now + self._compact_retry
            self._compact_retry = min(self._compact_retry * 2, COMPACT_RETRY_MAX)
        return min(delay, self._compact_retry_at - now)

    async def _compact(self, durable: DurableRun, why: str) -> bool:
        """Compact one journal; False if the disk could not take it (kept as it is)."""
        before = durable.journal.size
        try:
            await compact(durable.journal)
        except OSError as exc:
            log.warning("journal.compact_failed", run=durable.run_id, error=str(exc))
            return False
        finally:
            durable.forget_info()
        log.info("journal.removed", run=durable.run_id, why=why, bytes=before)
        return True
