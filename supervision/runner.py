"""The runner: one task that owns a run from spawn to its final Completed event.

Theory of operation:
  1. Spawn (errors raise SpawnError before task_status.started) and register the run.
  2. One reader task per pipe hands each read to the pump: itself, while the pump is parked
     (pump.py, `take`; it then reads only once the pump can take again), else as an OutputChunk
     event through the bounded channel.  A busy pump or a full channel blocks the reader, so
     the pipe fills and the child blocks in write(): that is the back-pressure; nothing is
     ever dropped.
  3. Wait for the root to exit (its pidfd becomes readable), a cancel request, or a timeout.
     The root is not reaped yet: as a zombie it pins pid = pgid = sid, so neither killpg nor
     the pgid/sid attribution can hit an unrelated process that reused the number.
  4. The ladder ends whatever is left (after a natural exit: the leftovers that must not
     survive the run); then the root is reaped and adopted orphans are reaped.  A ladder
     that could not see every member gone (no descriptor for /proc) leaves the run id to the
     reaper's sweep (reaper.py), which kills what still carries the run's marker.
  5. Drain: readers keep reading until EOF; once the tree is dead, a read that waits longer than
     drain_timeout means a stray holds the pipe, and the reader gives up.  Waiting for the
     consumer is never cut short: that would lose output.
  6. Exactly one Completed, then the channel is closed.
If the runner itself is cancelled, its shielded, bounded finally SIGKILLs every member and reaps.
"""

from __future__ import annotations

import errno
import math
import os
import select
from typing import Literal

import structlog
import trio

from cc_executor.supervision import ladder
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import Completed, OutputChunk, RunEvent, Stream
from cc_executor.supervision.outcome import (
    Cancelled,
    Exited,
    Lost,
    Outcome,
    Rung,
    Signalled,
    TimedOut,
    exit_from_returncode,
)
from cc_executor.supervision.reaper import reap_orphans
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.run import Run
from cc_executor.supervision.spawn import Spawned, SpawnSpec, spawn

log = structlog.get_logger()


class _PipeReader:
    """Copies one pipe into the events channel until EOF (or a stalled drain)."""

    def __init__(
        self, run: Run, stream: Stream, pipe: trio.lowlevel.FdStream, config: SupervisionConfig
    ) -> None:
        self._run = run
        self._stream: Stream = stream
        self._pipe = pipe
        self._config = config
        self._draining = False
        self._short = False  # the last read took less than read_size: the pipe is likely empty
        self._receive_scope: trio.CancelScope | None = None

    def start_drain(self) -> None:
        """The tree is dead: from now on a read may wait at most drain_timeout for data."""
        self._draining = True
        if self._receive_scope is not None:
            self._receive_scope.deadline = trio.current_time() + self._config.drain_timeout

    def _receive_deadline(self) -> float:
        if not self._draining:
            return math.inf
        return trio.current_time() + self._config.drain_timeout

    async def _receive(self) -> bytes:
        """One read of the pipe (``FdStream.receive_some``, with one difference): after a
        short read the pipe is most likely empty, so wait until it is readable before reading
        instead of trying a read that fails first — for a child that writes a line at a time,
        a syscall, an epoll re-arm and a pass of the scheduler fewer per line.

        Raises:
            trio.ClosedResourceError: the pipe was closed.
            trio.BrokenResourceError: the read failed.
        """
        fd = self._pipe.fileno()
        if self._short:
            await trio.lowlevel.wait_readable(fd)
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                # No further than a PAUSE's fence (run.py), put up while this waited.
                size = self._run._read_limit(self._stream, self._config.read_size)
                data = os.read(fd, size)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    raise trio.ClosedResourceError("the pipe was closed") from None
                raise trio.BrokenResourceError from exc
            else:
                self._short = len(data) < size
                return data

    async def run(self, events: trio.MemorySendChannel[RunEvent]) -> None:
        try:
            await self._read_all(events)
        finally:
            self._run._stream_ended(self._stream)

    async def _read_all(self, events: trio.MemorySendChannel[RunEvent]) -> None:
        with events:  # closed without the checkpoint of aclose: the reads were checkpoints
            while True:
                pump = self._run.pump
                # Read only what the pump can take at once: a stalled sink then holds the
                # chunk being sent, not reads made ahead of it.  Waiting is back-pressure.
                if pump is not None and await pump.until_takes():
                    self._run.stalls += 1
                # The deadline covers only the wait for pipe data, never the wait for the
                # consumer (a cancelled receive_some loses no data).
                with trio.CancelScope(deadline=self._receive_deadline()) as scope:
                    self._receive_scope = scope
                    data = await self._receive()
                self._receive_scope = None
                if scope.cancelled_caught:
                    log.warning(
                        "runner.drain_timeout", run_id=self._run.run_id, stream=self._stream
                    )
                    self._pipe.close()
                    return
                if not data:
                    return
                self._run._note_output(self._stream, len(data))
                chunk = OutputChunk(self._stream, data)
                if self._run._held_states:  # a state change waits for room: it goes first
                    await self._run._before_chunk(self._stream)  # (unless it is behind this)
                await self._deliver(events, chunk)
                self._run._chunk_delivered(self._stream, len(data))

    async def _deliver(self, events: trio.MemorySendChannel[RunEvent], chunk: OutputChunk) -> None:
        pump = self._run.pump  # (a run's pump may be set after its first read began)
        if pump is not None and pump.can_take():
            # The pump is parked: the chunk is delivered here, a task switch sooner.
            # If it is busy after all (the pipe had to be waited for), the channel.
            await pump.take(chunk)
            return
        try:
            events.send_nowait(chunk)
        except trio.WouldBlock:
            # The consumer is behind: this is where back-pressure holds the child.
            self._run.stalls += 1
            await events.send(chunk)


def _has_exited(pidfd: int) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


async def _wait_for_end(run: Run, pidfd: int) -> _EndRequest | None:
    """Wait for the root's exit (None), or a cancel or timeout (why the run must be ended)."""
    while True:
        with run._wake:
            await trio.lowlevel.wait_readable(pidfd)
            return None
        if run._cancel_reason is None and _has_exited(pidfd):
            return None  # the deadline and the exit raced; the exit wins
        idle_only = run._cancel_reason is None and trio.current_time() < run._absolute_deadline
        if idle_only and run._was_writing():
            run._restart_idle_clock()  # the daemon was not reading; the child was not idle
            continue
        return _EndRequest(run)


class _EndRequest:
    """Why the runner ended the run early: a cancel(reason) or a timeout of some kind."""

    def __init__(self, run: Run) -> None:
        self.reason = run._cancel_reason
        self.timeout_kind: Literal["idle", "absolute"] = (
            "absolute" if trio.current_time() >= run._absolute_deadline else "idle"
        )

    def outcome(self, run: Run, rung: Rung, exit: Exited | Signalled) -> Outcome:
        # A cancel that arrived while the timeout was being handled still counts as a cancel.
        reason = run._cancel_reason if run._cancel_reason is not None else self.reason
        if reason is not None:
            return Cancelled(reason=reason, rung=rung, exit=exit)
        return TimedOut(kind=self.timeout_kind, rung=rung, exit=exit)


async def run_process(
    spec: SpawnSpec,
    config: SupervisionConfig,
    events: trio.MemorySendChannel[RunEvent],
    registry: RunRegistry,
    *,
    # Not a cancellation deadline (ASYNC109): expiry ends the run through the ladder and is
    # reported as TimedOut, which a caller-owned cancel scope could not do.
    timeout: float | None = None,  # noqa: ASYNC109
    idle_timeout: float | None = None,
    task_status: trio.TaskStatus[Run] = trio.TASK_STATUS_IGNORED,
) -> Outcome:
    """Run one command to completion, streaming its output and final Completed into `events`.

    Takes ownership of `events` (closed on return, also on SpawnError).

    Args:
        timeout: end the run (TimedOut "absolute") after this many seconds.
        idle_timeout: end the run (TimedOut "idle") after this many seconds without output;
            the idle clock stops while the run is paused.

    Raises:
        SpawnError: before task_status.started, so `await nursery.start(run_process, ...)`
            raises it.
        DuplicateRun: the run id is already registered.
    """
    with events:  # closed without aclose's checkpoint (the run had many)
        with registry.spawning(spec.run_id):
            spawned = await spawn(spec, config, daemon_id=registry.daemon_id)
            run = Run(
                spec,
                spawned,
                config,
                registry,
                events.clone(),
                timeout=timeout,
                idle_timeout=idle_timeout,
            )
            registry.add(run)
        pidfd = -1
        try:
            pidfd = await _open_pidfd(run, config)
            log.debug("run.started", run_id=run.run_id, pid=run.pid, argv0=spec.argv[0])
            task_status.started(run)
            outcome = await _supervise(run, spawned, pidfd, config, events, registry)
        finally:
            if run.outcome is None:
                # Aborted (cancelled from outside, or an unexpected error): nothing of the run
                # may survive its runner.
                with trio.move_on_after(config.kill_wait, shield=True):
                    await _abort(run, spawned, config, registry)
            if pidfd >= 0:
                trio.lowlevel.notify_closing(pidfd)
                os.close(pidfd)
            for pipe in (spawned.stdout, spawned.stderr):
                pipe.close()
            registry.remove(run)
    log.debug(
        "run.completed",
        run_id=run.run_id,
        outcome=outcome,  # an attrs object: the daemon's log set-up renders it as plain fields
        stdout_bytes=run.stdout_bytes,
        stderr_bytes=run.stderr_bytes,
        duration=trio.current_time() - run.started_at,
    )
    return outcome


async def _open_pidfd(run: Run, config: SupervisionConfig) -> int:
    """A pidfd for the root; short of descriptors (EMFILE, ENFILE), retried with a backoff.

    The root is our unreaped child, so its pid cannot be reused meanwhile.
    """
    retry = config.procfs_retry_initial
    while True:
        try:
            return os.pidfd_open(run.pid)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                raise
            log.warning("runner.pidfd_exhausted", run_id=run.run_id, error=str(exc))
        await trio.sleep(retry)
        retry = min(retry * 2, config.procfs_retry_max)


async def _supervise(
    run: Run,
    spawned: Spawned,
    pidfd: int,
    config: SupervisionConfig,
    events: trio.MemorySendChannel[RunEvent],
    registry: RunRegistry,
) -> Outcome:
    readers = [
        _PipeReader(run, "stdout", spawned.stdout, config),
        _PipeReader(run, "stderr", spawned.stderr, config),
    ]
    try:
        async with trio.open_nursery() as nursery:
            run._background = nursery  # puts held state changes into the channel (run.py)
            for reader in readers:
                nursery.start_soon(reader.run, events.clone())
            if run.stdin_open:  # a task only for a run whose stdin is a pipe
                nursery.start_soon(run._serve_stdin)
            request = await _wait_for_end(run, pidfd)
            rung, seen_gone = await run._terminate()
            if not seen_gone:
                # Processes outside the group (setsid) may live on unseen: the reaper's sweep
                # finds them by the run's marker once /proc can be read (reaper.py).
                registry.leave_unconfirmed(run.run_id)
            outcome = await _reap_root(run, spawned, config, registry, request, rung)
            run._set_ended(rung)
            if run.orphan_zombies:
                # Every process of the run is gone, and the ladder's last scan saw each one that
                # had died among the daemon's children (tree.py): only then is there one to reap
                # here.  (Listing the daemon's children costs O(its children): ~150 us with a
                # thousand runs.)  Anything else the reaper task collects on its SIGCHLD.
                reap_orphans(registry)
            for reader in readers:
                reader.start_drain()
    finally:
        run._background = None  # closed: no fence may be put up without it
    await run._complete(outcome)
    await events.send(
        Completed(
            outcome=outcome,
            stdout_bytes=run.stdout_bytes,
            stderr_bytes=run.stderr_bytes,
            duration=trio.current_time() - run.started_at,
        )
    )
    return outcome


async def _reap_root(
    run: Run,
    spawned: Spawned,
    config: SupervisionConfig,
    registry: RunRegistry,
    request: _EndRequest | None,
    rung: Rung,
) -> Outcome:
    # After its exit (the pidfd was readable) the root is reaped at once: no scope to bound it.
    returncode = spawned.process.poll()
    if returncode is None:
        with trio.move_on_after(config.kill_wait):
            returncode = await spawned.process.wait()
    if returncode is None:
        # Only a root stuck in uninterruptible sleep gets here; the reaper collects it later.
        log.error("runner.root_survived", run_id=run.run_id, pid=run.pid)
        return Lost(reason="the root process survived SIGKILL")
    registry.root_reaped(run)
    exit = exit_from_returncode(returncode)
    return exit if request is None else request.outcome(run, rung, exit)


async def _abort(
    run: Run, spawned: Spawned, config: SupervisionConfig, registry: RunRegistry
) -> None:
    """Kill everything, reap, and complete the run without a Completed event."""
    exit: Exited | Signalled | None = None
    try:
        if not await ladder.kill(run, config):
            registry.leave_unconfirmed(run.run_id)  # swept by the reaper (see _supervise)
        exit = exit_from_returncode(await spawned.process.wait())
        registry.root_reaped(run)
        reap_orphans(registry)
    finally:
        outcome: Outcome = (
            Lost(reason="the runner was cancelled and its root did not exit")
            if exit is None
            else Cancelled(reason="runner cancelled", rung=Rung.SIGKILL, exit=exit)
        )
        run._finish(outcome)
