"""One handler per method: turn typed params into an effect on a run and a result.

Handlers raise the protocol's errors (each carries the JSON-RPC error to send back); the session
sends exactly one reply per request.  Run-targeted handlers reply only once their effect has
happened: PAUSE when every process of the run is stopped, CANCEL when the run is over.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import structlog
import trio

from cc_executor.executor.claude import profile as claude
from cc_executor.executor.rpc.session import Handled, RunSlot, Session
from cc_executor.executor.runs.admission import check_capacity, start_runner
from cc_executor.executor.runs.limits import release_when_done
from cc_executor.executor.runs.policy import child_environment
from cc_executor.executor.runs.wire import run_status, rung_name
from cc_executor.protocol import (
    JSON,
    AttachParams,
    ControlParams,
    ControlTimeout,
    DetachParams,
    ExecuteParams,
    InvalidParams,
    InvalidState,
    RangeRemoved,
    RunNotFound,
    SignalParams,
    SpawnFailed,
    StatusParams,
    StdinParams,
    resolve_argv,
)
from cc_executor.supervision import ControlTimeout as SupervisionControlTimeout
from cc_executor.supervision import (
    InvalidTransition,
    Run,
    Rung,
    SpawnError,
    SpawnSpec,
)

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon

log = structlog.get_logger()


def invalid_state(run: Run, exc: InvalidTransition) -> InvalidState:
    """The wire error for a control the run's state does not allow."""
    return InvalidState(f"run {run.run_id}: {exc}", {"run": run.run_id, "state": run.state.value})


SessionHandler = Callable[["Daemon", Session, Any], Awaitable[Handled]]
RunHandler = Callable[["Daemon", Session, RunSlot, Any], Awaitable[Handled]]


async def execute(daemon: Daemon, session: Session, params: ExecuteParams) -> Handled:
    """Spawn a run in the session's nursery; its output flows once the reply is sent."""
    if params.durable:
        return await execute_durable(daemon, session, params)
    config = daemon.config
    check_capacity(daemon, session.live_runs)
    argv = resolve_argv(params)
    env = child_environment(config, params.env)
    cwd = daemon.policy.check(params, argv, env)
    identity = session.peer.identity.name
    spec = SpawnSpec(argv=argv, env=env, cwd=cwd, stdin=params.stdin, run_id=daemon.new_run_id())
    spec = daemon.policy.limited(spec, identity)
    ticket = daemon.policy.limits.admit(identity)
    try:
        run, receive = await start_runner(
            session.nursery,
            spec,
            config.supervision,
            daemon.registry,
            timeout=params.timeout,
            idle_timeout=params.idle_timeout,
        )
    except SpawnError as exc:
        ticket.release()
        raise SpawnFailed(exc.message, {"argv0": argv[0]}) from None
    session.nursery.start_soon(release_when_done, ticket, run)
    slot = session.add_run(run, receive)
    daemon.run_started(slot.run)

    async def follow_up() -> None:
        await session.start_streaming(slot)

    return Handled(
        {"status": "started", "run": run.run_id, "pid": run.pid, "pgid": run.pgid},
        follow_up,
    )


async def execute_durable(daemon: Daemon, session: Session, params: ExecuteParams) -> Handled:
    """Spawn a durable run in the daemon's nursery; this connection is attached from seq 0."""
    config = daemon.config
    check_capacity(daemon, None)
    argv = resolve_argv(params)
    env = child_environment(config, params.env)
    cwd = daemon.policy.check(params, argv, env)
    identity = session.peer.identity.name
    run_id = daemon.durable.new_run_id()
    spec = SpawnSpec(argv=argv, env=env, cwd=cwd, stdin=params.stdin, run_id=run_id)
    spec = daemon.policy.limited(spec, identity)
    ticket = daemon.policy.limits.admit(identity)
    try:
        durable = await daemon.durable.start(daemon, daemon.nursery, spec, params, identity)
    except SpawnError as exc:
        ticket.release()
        raise SpawnFailed(exc.message, {"argv0": argv[0]}) from None
    run = durable.run
    assert run is not None
    daemon.nursery.start_soon(release_when_done, ticket, run)
    daemon.durable_started(durable)

    async def follow_up() -> None:
        await session.send_notification(
            "process.started",
            {
                "run": run.run_id,
                "status": "started",
                "pid": run.pid,
                "pgid": run.pgid,
                "argv": list(run.argv),
                "durable": True,
            },
        )
        session.attach(durable, 0)

    return Handled(
        {"status": "started", "run": run.run_id, "pid": run.pid, "pgid": run.pgid, "durable": True},
        follow_up,
    )


async def attach(daemon: Daemon, session: Session, params: AttachParams) -> Handled:
    """Replay a durable run's events after `from_seq`, then follow it live."""
    durable = daemon.durable.visible(params.run, session.peer.identity)
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
    if params.run in session.attachments:
        raise InvalidState(
            f"run {params.run}: this connection is attached already; detach first",
            {"run": params.run, "state": "attached"},
        )
    described = durable.status(trio.current_time())
    result: dict[str, JSON] = {
        "status": "attached",
        "run": params.run,
        "from_seq": params.from_seq,
        "last_seq": journal.last_seq,
        "state": described["state"],
        "journal": described["journal"],
    }

    async def follow_up() -> None:
        session.attach(durable, params.from_seq)

    return Handled(result, follow_up)


async def detach(daemon: Daemon, session: Session, params: DetachParams) -> Handled:
    """Stop following a durable run (idempotent); no event of it follows the reply."""
    if daemon.durable.visible(params.run, session.peer.identity) is None:
        raise RunNotFound(f"no durable run {params.run!r}", {"run": params.run})
    sent = await session.detach(params.run)
    return Handled({"status": "detached", "run": params.run, "last_sent_seq": sent})


async def status(daemon: Daemon, session: Session, params: StatusParams) -> Handled:
    """One run's status, or the daemon's when no run is named."""
    if params.run is None:
        return Handled(daemon.status())
    now = trio.current_time()
    slot = session.slots.get(params.run)
    if slot is None:
        durable = daemon.durable.visible(params.run, session.peer.identity)
        if durable is not None:
            return Handled(durable.status(now))
        slot = session.find_slot(params.run)
    return Handled(run_status(slot.run, slot.pump.last_seq, now))


async def list_runs(daemon: Daemon, session: Session, params: object) -> Handled:
    """The runs of this identity on every connection (every run for an admin), live and
    recently finished, and its durable runs; ``here`` marks this connection's own."""
    now = trio.current_time()
    runs: list[JSON] = []
    for other in daemon.sessions:
        if session.sees(other):
            for slot in other.slots.values():
                status = run_status(slot.run, slot.pump.last_seq, now)
                runs.append({**status, "here": other is session})
    for durable in daemon.durable.visible_runs(session.peer.identity):
        runs.append({**durable.status(now), "here": durable.run_id in session.attachments})
    return Handled({"runs": runs})


async def apply_control(
    daemon: Daemon, run: Run, action: Literal["PAUSE", "RESUME", "CANCEL"], reason: str
) -> Rung | None:
    """Pause, resume or cancel a run; return once the effect holds (with the rung for CANCEL).

    Raises the wire's errors: InvalidState for a transition the run's state does not allow,
    ControlTimeout when processes did not reach the state in time.
    """
    try:
        match action:
            case "PAUSE":
                await run.pause()
                return None
            case "RESUME":
                await run.resume()
                return None
            case _:
                durable = daemon.durable.get(run.run_id)
                if durable is not None:
                    # A full journal in "block" mode must not hold the ladder up.
                    durable.journal.unblock()
                return await run.cancel(reason)
    except InvalidTransition as exc:
        raise invalid_state(run, exc) from None
    except SupervisionControlTimeout as exc:
        pids: list[JSON] = list(exc.not_stopped)
        raise ControlTimeout(
            f"run {run.run_id}: {exc}", {"run": run.run_id, "pids": pids}
        ) from None


async def control(
    daemon: Daemon, session: Session, slot: RunSlot, params: ControlParams
) -> Handled:
    """PAUSE, RESUME or CANCEL, replying once the effect has happened."""
    run = slot.run
    rung = await apply_control(daemon, run, params.type, "cancelled by client")
    if rung is not None:
        return Handled({"status": "canceled", "run": run.run_id, "rung": rung_name(rung)})
    status = "paused" if params.type == "PAUSE" else "resumed"
    return Handled({"status": status, "run": run.run_id})


async def send_signal(
    daemon: Daemon, session: Session, slot: RunSlot, params: SignalParams
) -> Handled:
    """Deliver a named signal to the run's process group and every process that left it."""
    run = slot.run
    number = signal.Signals[params.signal]
    try:
        run.send_signal(number)
    except InvalidTransition as exc:
        raise invalid_state(run, exc) from None
    return Handled({"status": "signalled", "run": run.run_id, "signal": params.signal})


async def write_stdin(
    daemon: Daemon, session: Session, slot: RunSlot, params: StdinParams
) -> Handled:
    """Write to the child's stdin (waiting while its pipe is full), then close it if asked."""
    run = slot.run
    data = params.payload()
    try:
        if data:
            await run.write_stdin(data)
        if params.eof:
            await run.close_stdin()
    except InvalidTransition as exc:
        raise invalid_state(run, exc) from None
    return Handled({"status": "written", "run": run.run_id, "bytes": len(data), "eof": params.eof})


SESSION_HANDLERS: dict[str, SessionHandler] = {
    "execute": execute,
    "status": status,
    "list": list_runs,
    "attach": attach,
    "detach": detach,
    "claude": claude.claude,
}
RUN_HANDLERS: dict[str, RunHandler] = {
    "control": control,
    "signal": send_signal,
    "stdin": write_stdin,
}
