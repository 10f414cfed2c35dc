"""The one start path: admit a run, spawn it, pump its events into its sink, end it.

Theory of operation
-------------------
``start_run`` is how every run begins — ``execute`` and ``claude``, JSON-RPC and MCP, durable
or not.  It admits the plan (draining, ``max_runs``, the starting connection's
``max_runs_per_connection`` — durable runs count too, and so do runs still being spawned, so
that concurrent starts (MCP calls run at once) cannot overshoot a limit —, the owner's limits,
the plan's exclusive key), then starts the run's *keeper* where the run is to live: the
connection's nursery, or the daemon's for a durable run (trio cannot move a task between
nurseries, so the lifetime is chosen here).  The keeper owns everything of the run:

- the runner (supervision's ``run_process``: the child, its pipes, its signals);
- the journal of a durable run, which is then the run's sink; connections attach to it;
- the pump (``OutputPump``) delivering numbered events through a tee: the observer (the Claude
  watcher) reads each event first, the completion is recorded on the ``LiveRun``, then the sink
  (a connection, the journal, an MCP call's log) gets the event;
- the observer's watch task; the owner's limit ticket and the exclusive key; the run's start
  and end lines and counts (the run table).

The keeper is the run's error boundary.  If the pump, the sink or the observer fail with
anything but cancellation, the failure is logged once with the run's ids and traceback and
counted (``ccx_internal_errors_total{where="run"}``); the run's output is drained and dropped,
the run is ended through the ladder, and its completion — ``outcome: failed``, ``reason:
"internal error: ..."`` — is recorded and offered to the sink.  If the runner itself fails, its
own shielded ``finally`` has killed the tree; the keeper records the same kind of completion.
Nothing of a run ever reaches the nursery it lives in: a connection or the daemon is never
taken down by one of its runs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol

import structlog
import trio

from cc_executor.executor.runs import wire
from cc_executor.executor.runs.control import cancel_quietly
from cc_executor.executor.runs.live import LiveRun
from cc_executor.executor.runs.plan import RunObserver, RunPlan
from cc_executor.protocol import InvalidState, LimitExceeded, ShuttingDown, SpawnFailed
from cc_executor.protocol.claude import ClaudeEvent
from cc_executor.supervision import (
    Completed,
    CompletedEvent,
    Lost,
    OutputPump,
    RunEvent,
    SequencedEvent,
    SpawnError,
    run_process,
)

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon
    from cc_executor.executor.runs.durable import DurableRun
    from cc_executor.executor.runs.limits import Ticket
    from cc_executor.executor.transport.frontdoor import Identity

log = structlog.get_logger()


class Sink(Protocol):
    """Where a run's events go: a connection, a journal, an MCP call's log."""

    async def deliver(
        self, live: LiveRun, event: SequencedEvent, claude: Sequence[ClaudeEvent]
    ) -> None:
        """One numbered event, with the typed Claude events it completes (if any).

        For a ``CompletedEvent``, ``live.completion`` is the completion to report.
        """

    async def note(self, live: LiveRun, event: ClaudeEvent) -> None:
        """An event of the run's observer that is not part of its stream (a watchdog firing)."""


class JournalSink:
    """A durable run's sink: its journal (attached connections read it from there)."""

    def __init__(self, durable: DurableRun) -> None:
        self._journal = durable.journal

    async def deliver(
        self, live: LiveRun, event: SequencedEvent, claude: Sequence[ClaudeEvent]
    ) -> None:
        await self._journal.deliver(event)

    async def note(self, live: LiveRun, event: ClaudeEvent) -> None:
        pass  # not journaled: an attached client learns of the watchdog from the outcome


def busy(key: str, holder: str | None) -> InvalidState:
    """The refusal of a run whose exclusive key another run holds."""
    return InvalidState(
        f"Claude session {key} is busy with run {holder}",
        {"claude_session": key, "run": holder, "state": "busy", "rule": "claude.busy_session"},
    )


def check_capacity(daemon: Daemon, origin: str | None) -> None:
    """Refuse a new run while draining or at a limit (`origin`: the starting connection)."""
    config = daemon.config
    if daemon.draining:
        raise ShuttingDown("the daemon is shutting down and accepts no new runs")
    if origin is not None:
        here = daemon.runs.admitted_from(origin)
        if here >= config.max_runs_per_connection:
            raise LimitExceeded(
                f"this connection already has {here} runs "
                f"(limit max_runs_per_connection={config.max_runs_per_connection})",
                {"limit": "max_runs_per_connection", "value": config.max_runs_per_connection},
            )
    if daemon.runs.admitted >= config.max_runs:
        raise LimitExceeded(
            f"the daemon already has {daemon.runs.admitted} runs "
            f"(limit max_runs={config.max_runs})",
            {"limit": "max_runs", "value": config.max_runs},
        )


async def start_run(
    daemon: Daemon,
    plan: RunPlan,
    owner: Identity,
    *,
    nursery: trio.Nursery,
    origin: str | None,
    sink: Sink | None,
) -> LiveRun:
    """Admit and spawn `plan`; return once it runs (its events flow into `sink`).

    `nursery` is the starting connection's (a durable run lives in the daemon's instead, its
    journal for a sink); `origin` names the starting connection for its limits and for "here".

    Raises:
        JsonRpcError: refused (draining, a limit, the exclusive key is held) or not spawned.
    """
    check_capacity(daemon, origin)
    key = plan.exclusive
    if key is not None and not daemon.claims.claim(key, plan.run_id):
        raise busy(key, daemon.claims.holder(key))
    try:
        ticket = daemon.policy.limits.admit(owner.name)
    except BaseException:
        if key is not None:
            daemon.claims.release(key, plan.run_id)
        raise
    place = daemon.nursery if plan.durable else nursery
    keeper = partial(_keep, daemon, plan, owner, origin, sink, ticket)
    # Counted against the limits while it spawns: other starts in flight see its place taken.
    daemon.runs.admit(plan.run_id, origin)
    try:
        live: LiveRun = await place.start(keeper)
    except SpawnError as exc:
        ticket.release()
        if key is not None:
            daemon.claims.release(key, plan.run_id)
        raise SpawnFailed(exc.message, {"argv0": plan.spec.argv[0]}) from None
    finally:
        daemon.runs.withdraw(plan.run_id)  # added by its keeper, or it did not start
    return live


async def _keep(
    daemon: Daemon,
    plan: RunPlan,
    owner: Identity,
    origin: str | None,
    sink: Sink | None,
    ticket: Ticket,
    *,
    task_status: trio.TaskStatus[LiveRun],
) -> None:
    """The run's keeper and error boundary (see the module docstring)."""
    if plan.durable:  # it lives in the daemon's nursery: the session's ids are not its own
        structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(run=plan.run_id, identity=owner.name)
    live: LiveRun | None = None
    observer: RunObserver | None = None
    durable: DurableRun | None = None
    send, receive = trio.open_memory_channel[RunEvent](plan.supervision.channel_capacity)
    try:
        async with trio.open_nursery() as inner:
            runner = partial(
                run_process,
                plan.spec,
                plan.supervision,
                send,
                daemon.registry,
                timeout=plan.timeout,
                idle_timeout=plan.idle_timeout,
            )
            try:
                run = await inner.start(runner)
            except SpawnError:
                receive.close()  # the runner has closed its end already
                raise
            if plan.durable:
                durable = daemon.durable.create(
                    run, owner.name, plan.kind
                )  # SpawnError: unrecorded
                inner.start_soon(durable.watch)
            live = LiveRun(
                run,
                kind=plan.kind,
                owner=owner,
                origin=origin,
                started_wall=time.time(),
                durable=durable,
            )
            live.session = plan.session
            target: Sink = JournalSink(durable) if durable is not None else _required(sink)
            if plan.observe is not None:
                observer = live.claude = plan.observe(
                    run, daemon.claims, partial(target.note, live), partial(_post, live)
                )
            pump = OutputPump(
                receive.clone(),
                _tee(live, observer, target),
                plan.supervision,
                run.unread_bytes,
                # A journal batches its writes: flushed whenever the pump has nothing waiting.
                None if durable is None else durable.journal.flush,
                None if observer is None else observer.closing,
            )
            live.pump = run.pump = pump
            daemon.runs.add(live, origin=origin, identity=owner.name)
            task_status.started(live)
            await _pump(daemon, live, pump, observer, target, receive, inner)
    except Exception as exc:
        if live is None:  # not started: the caller's start_run reports it
            refused = _spawn_error(exc)
            if refused is not None:
                raise refused from None
            raise
        _log_failure(daemon, live, "runner", exc)
        await _report_failure(live, target, exc)
    finally:
        receive.close()
        ticket.release()
        if plan.exclusive is not None:
            daemon.claims.release(plan.exclusive, plan.run_id)
        if observer is not None:
            observer.release()
        if live is not None:
            if live.completion is None and live.run.outcome is not None:
                live.completion = wire.completion(live.run.outcome, live.run.pid, live.run.pgid)
            if durable is not None:
                with trio.move_on_after(daemon.config.connect_timeout, shield=True):
                    await durable.journal.close()
                daemon.durable.finished(durable, live.completion)
            daemon.runs.finish(live)
            live.done.set()


def _spawn_error(exc: Exception) -> SpawnError | None:
    """The SpawnError `exc` is, or is made of (the keeper's nursery wraps what it raises)."""
    if isinstance(exc, SpawnError):
        return exc
    if isinstance(exc, ExceptionGroup):
        matched, rest = exc.split(SpawnError)
        if matched is not None and rest is None:
            first = matched.exceptions[0]
            return first if isinstance(first, SpawnError) else None
    return None


def _post(live: LiveRun, name: str, data: bytes) -> None:
    """A note into the run's sequenced stream (dropped once the run is over)."""
    if live.pump is not None:
        live.pump.post(name, data)


def _required(sink: Sink | None) -> Sink:
    assert sink is not None, "a run that is not durable needs a sink"
    return sink


def _tee(
    live: LiveRun, observer: RunObserver | None, target: Sink
) -> Callable[[SequencedEvent], Awaitable[None]]:
    """The pump's delivery: the observer first, the completion recorded, then the sink."""

    async def deliver(event: SequencedEvent) -> None:
        typed = observer.feed(event) if observer is not None else []
        if isinstance(event, CompletedEvent):
            completion = wire.completed(event.completed, live.run.pid, live.run.pgid)
            if observer is not None:
                completion = observer.completion(completion, event.completed.outcome)
            live.completion = completion
            if live.durable is not None:  # before the journal has it: attachments read it
                live.durable.completion = completion
        await target.deliver(live, event, typed)
        if observer is not None:
            observer.delivered()

    return deliver


async def _pump(
    daemon: Daemon,
    live: LiveRun,
    pump: OutputPump,
    observer: RunObserver | None,
    target: Sink,
    receive: trio.MemoryReceiveChannel[RunEvent],
    inner: trio.Nursery,
) -> None:
    """Pump (and watch) until the run is over; on a failure, end the run as failed."""
    try:
        if observer is None:
            await pump.run()  # in the keeper's own task: a run without an observer needs no other
        else:
            async with trio.open_nursery() as guarded:
                guarded.start_soon(pump.run)
                guarded.start_soon(observer.watch)
    except Exception as exc:
        _log_failure(daemon, live, "pump", exc)
        # Keep the runner unblocked, end the run through the ladder, then report it.
        inner.start_soon(_discard, receive)
        with trio.move_on_after(daemon.run_end_bound()):
            await cancel_quietly(live.run, f"internal error: {_cause(exc)!r}")
            await live.run.wait()
        await _report_failure(live, target, exc)


async def _discard(receive: trio.MemoryReceiveChannel[RunEvent]) -> None:
    async for _ in receive:
        pass


def _log_failure(daemon: Daemon, live: LiveRun, where: str, exc: Exception) -> None:
    log.error("run.internal_error", run=live.run_id, where=where, error=repr(exc), exc_info=exc)
    daemon.metrics.internal_errors["run"] += 1


def _cause(exc: BaseException) -> BaseException:
    """The failure itself, out of the nurseries' exception groups around it."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _report_failure(live: LiveRun, target: Sink, exc: Exception) -> None:
    """Record the run as failed by the daemon and offer the completion to its sink."""
    run = live.run
    cause = _cause(exc)
    reason = f"internal error: {type(cause).__name__}: {cause}"
    live.completion = wire.internal_failure(
        reason,
        run.pid,
        run.pgid,
        run.stdout_bytes,
        run.stderr_bytes,
        trio.current_time() - run.started_at,
    )
    seq = (live.pump.last_seq if live.pump is not None else 0) + 1
    completed = Completed(
        outcome=Lost(reason),  # what a journal records: supervision has no "failed" outcome
        stdout_bytes=run.stdout_bytes,
        stderr_bytes=run.stderr_bytes,
        duration=trio.current_time() - run.started_at,
    )
    try:
        await target.deliver(live, CompletedEvent(seq=seq, completed=completed), ())
    except Exception as again:  # the sink is what failed: the completion stays in memory
        log.warning("run.completion_undelivered", run=live.run_id, error=repr(again))
