"""One handler per JSON-RPC method: typed params in, an effect and a typed result out.

Handlers raise the protocol's errors (each carries the JSON-RPC error to send back); the session
sends exactly one reply per request.  Run-targeted handlers reply only once their effect has
happened: PAUSE when every process of the run is stopped, CANCEL when the run is over.  Runs
are started through the one start path (``Session.start`` → runs/start.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio

from cc_executor.executor.claude.plan import plan_claude
from cc_executor.executor.claude.session import session_of
from cc_executor.executor.rpc.batch import Handled
from cc_executor.executor.rpc.runs import Gone, RunHandle
from cc_executor.executor.rpc.session import GateKey, Session
from cc_executor.executor.runs import control as controls
from cc_executor.executor.runs.plan import plan_execute
from cc_executor.executor.runs.start import busy
from cc_executor.executor.runs.wire import rung_name
from cc_executor.protocol import (
    AttachParams,
    ControlParams,
    DetachParams,
    ExecuteParams,
    Id,
    InvalidParams,
    InvalidState,
    JsonRpcError,
    ListParams,
    RangeRemoved,
    RunNotFound,
    SignalParams,
    StatusParams,
    StdinParams,
)
from cc_executor.protocol.claude import ClaudeParams
from cc_executor.protocol.notices import Completion, RunCompleted
from cc_executor.protocol.results import (
    Attached,
    ControlDone,
    Detached,
    Queued,
    SignalSent,
    StdinWritten,
)
from cc_executor.protocol.server_codec import list_page

log = structlog.get_logger()

SessionHandler = Callable[[Session, Id, Any], Awaitable[Handled]]
RunHandler = Callable[[Session, RunHandle, Any], Awaitable[Handled]]


async def execute(session: Session, request_id: Id, params: ExecuteParams) -> Handled:
    """Spawn a run; its output flows once the reply is sent."""
    daemon = session.daemon
    owner = session.peer.identity
    plan = plan_execute(
        daemon.config, daemon.policy, params, owner.name, daemon.new_run_id(params.durable)
    )
    return await session.start(request_id, plan)


async def claude(session: Session, request_id: Id, params: ClaudeParams) -> Handled:
    """Start a Claude Code run (a session with `session: true`); its output and typed events
    flow once the reply is sent."""
    daemon = session.daemon
    plan = plan_claude(daemon, params, session.peer.identity.name)
    key = plan.exclusive
    if key is None or daemon.claims.claim(key, plan.run_id):
        try:
            return await session.start(request_id, plan)
        except BaseException:
            if key is not None:
                daemon.claims.release(key, plan.run_id)
            raise
    if daemon.config.claude.busy_session == "refuse":
        raise busy(key, daemon.claims.holder(key))
    gate = GateKey(plan.run_id)
    session.hold(gate, plan.run_id)
    # In line now, before the reply: first come, first served across connections.
    turn = daemon.claims.line_up(key, plan.run_id)
    replied = trio.Event()

    async def start_in_turn() -> None:
        """Wait for the Claude session, then (once the reply is out) start the run; a client
        gone meanwhile leaves the line, and nothing is spawned for it."""
        try:
            with session.while_connected() as waiting:
                if turn is not None:
                    await daemon.claims.wait_turn(key, plan.run_id, turn)  # leaves if cancelled
                try:
                    await replied.wait()
                except BaseException:
                    daemon.claims.release(key, plan.run_id)  # it held the session: pass it on
                    raise
            if waiting.cancelled_caught:
                log.info("claude.queued_start_withdrawn", run=plan.run_id)
                return
            try:
                live = await session.launch(plan)
            except JsonRpcError as exc:
                daemon.claims.release(key, plan.run_id)
                log.info("claude.queued_start_failed", run=plan.run_id, error=exc.message)
                failed = Completion(
                    "failed", "spawn_failed", reason=exc.message, claude={"has_result": False}
                )
                with contextlib.suppress(Gone):  # the client left while the run waited
                    await session.send_notice(RunCompleted(plan.run_id, 1, failed), gated=False)
                return
            except BaseException:
                daemon.claims.release(key, plan.run_id)  # it held the session: pass it on
                raise
            await session.announce(live)
        finally:
            session.gates.open(gate)

    session.nursery.start_soon(start_in_turn)

    async def follow_up() -> None:
        replied.set()

    return Handled(Queued(plan.run_id, key), follow_up)


async def attach(session: Session, request_id: Id, params: AttachParams) -> Handled:
    """Replay a durable run's events after `from_seq`, then follow it live."""
    daemon = session.daemon
    await session.lookups.loaded()
    durable = await daemon.durable.visible(params.run, session.peer.identity)
    if durable is None:
        raise RunNotFound(f"no durable run {params.run!r}", {"run": params.run})
    journal = durable.journal
    if params.from_seq > journal.last_seq:
        raise InvalidParams(
            f"from_seq {params.from_seq} is beyond the run's last seq {journal.last_seq}",
            {"run": params.run, "last_seq": journal.last_seq},
        )
    removed = journal.removed
    if removed is not None and params.from_seq < removed.last:
        raise RangeRemoved(
            f"run {params.run}: events {removed.first}..{removed.last} were removed by "
            f"retention; attach from_seq >= {removed.last} for what is left",
            {
                "run": params.run,
                "removed_first": removed.first,
                "removed_last": removed.last,
                "available_from_seq": removed.last,
            },
        )
    if session.attachments.following(params.run):
        raise InvalidState(
            f"run {params.run}: this connection is attached already; detach first",
            {"run": params.run, "state": "attached"},
        )
    live = daemon.runs.get(params.run)
    state = live.state if live is not None else durable.info(trio.current_time()).state
    # A live session's snapshot: what is pending now, posted before from_seq or not.
    snapshot = None if live is None or not live.session else session_of(live).snapshot()
    session.hold(request_id, params.run)

    async def follow_up() -> None:
        session.attachments.attach(durable, params.from_seq)

    result = Attached(
        params.run, params.from_seq, journal.last_seq, state, durable.journal_info(), snapshot
    )
    return Handled(result, follow_up)


async def detach(session: Session, request_id: Id, params: DetachParams) -> Handled:
    """Stop following a durable run (idempotent); no event of it follows the reply."""
    await session.lookups.loaded()
    if await session.daemon.durable.visible(params.run, session.peer.identity) is None:
        raise RunNotFound(f"no durable run {params.run!r}", {"run": params.run})
    sent = await session.attachments.detach(params.run)
    return Handled(Detached(params.run, sent or 0))


async def status(session: Session, request_id: Id, params: StatusParams) -> Handled:
    """One run's status, or the daemon's when no run is named."""
    daemon = session.daemon
    identity = session.peer.identity
    if params.run is None:
        await session.lookups.loaded()
        return Handled(await daemon.status(identity))
    now = trio.current_time()
    live = daemon.runs.visible(params.run, identity)
    if live is not None:
        return Handled(live.info(now, session.session_id))
    await session.lookups.loaded()
    durable = await daemon.durable.visible(params.run, identity)
    if durable is not None:
        return Handled(durable.info(now))
    raise RunNotFound(f"no run {params.run!r}", {"run": params.run})


async def list_runs(session: Session, request_id: Id, params: ListParams) -> Handled:
    """The runs the caller's identity may see, on any connection, oldest first, a page at a
    time: live and recently completed runs, and durable runs from their journals."""
    daemon = session.daemon
    identity = session.peer.identity
    await session.lookups.loaded()
    now = trio.current_time()
    listed = {
        live.run_id: live.info(now, session.session_id)
        for live in daemon.runs.visible_runs(identity)
    }
    for durable in await daemon.durable.visible_runs(identity):
        if durable.run_id not in listed:
            listed[durable.run_id] = durable.info(now)
    return Handled(list_page(listed.values(), params.after, params.limit))


async def control(
    session: Session,
    handle: RunHandle,
    params: ControlParams,
    held: Callable[[], None] | None = None,
) -> Handled:
    """PAUSE, RESUME or CANCEL, returning once the effect has happened (for a run this
    connection pumps, its event waits for the reply in the sink, and `held` is called as
    soon as a PAUSE or RESUME holds: rpc/runs.py)."""
    live = handle.live
    started = trio.current_time()
    try:
        rung = await controls.apply_control(live, params.type, "cancelled by client", held)
    finally:
        session.daemon.metrics.control_seconds.observe(params.type, trio.current_time() - started)
    if rung is not None:
        return Handled(ControlDone("canceled", live.run_id, rung_name(rung)))
    return Handled(ControlDone("paused" if params.type == "PAUSE" else "resumed", live.run_id))


async def send_signal(session: Session, handle: RunHandle, params: SignalParams) -> Handled:
    """Deliver a named signal to the run's process group and every process that left it."""
    controls.send_signal(handle.live, params.signal)
    return Handled(SignalSent(handle.live.run_id, params.signal))


async def write_stdin(session: Session, handle: RunHandle, params: StdinParams) -> Handled:
    """Write to the child's stdin (replying once the bytes are in the pipe), maybe close it."""
    data = params.payload()
    await controls.write_stdin(handle.live, data, params.eof)
    return Handled(StdinWritten(handle.live.run_id, len(data), params.eof))


SESSION_HANDLERS: dict[str, SessionHandler] = {
    "execute": execute,
    "status": status,
    "list": list_runs,
    "attach": attach,
    "detach": detach,
    "claude": claude,
}
RUN_HANDLERS: dict[str, RunHandler] = {
    "control": control,
    "signal": send_signal,
    "stdin": write_stdin,
}


def _add_session_methods() -> None:
    """The claude.* methods of session runs (rpc/claude.py, which imports this module)."""
    from cc_executor.executor.rpc import claude as session_methods

    SESSION_HANDLERS.update(session_methods.SESSION_HANDLERS)
    RUN_HANDLERS.update(session_methods.RUN_HANDLERS)


_add_session_methods()
