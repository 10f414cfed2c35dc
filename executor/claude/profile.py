"""Claude Code runs: the `claude` method, from a request to a supervised, watched run.

Theory of operation
-------------------
A `claude` request becomes an argv (protocol.claude.build_argv, with the configured binary and
the flag rules of policy.py), an environment built by policy (``claude_environment``), and a run
started through the same runner (supervision's ``run_process``) and the same per-connection
slot and pump as ``execute``.  The run's supervision config gains the interrupt rung, so every
way of ending it — CANCEL, the absolute timeout, the watchdog, a disconnect, shutdown — starts
with SIGINT to the CLI's group (it then writes a proper ``result`` and kills the tools it
started in their own sessions), then SIGTERM, SIGKILL and the sweep of escaped descendants.

The pump delivers through a ``ClaudeStream``, which wraps the session's own deliverer: raw
output goes out as ``process.output`` with its seq, as for any run; stdout is also fed to the
stream-json parser and each typed event follows as an unsequenced ``claude.event``.  The run's
``process.completed`` gains a ``claude`` object (result, cost, usage, turns, session id) and
its ``status`` follows the ``result`` line, not the exit code.

A watcher task per run, in the session's nursery, does what needs a clock:
  * the idle watchdog: no stdout for ``idle_timeout`` seconds (while nothing is being
    delivered and the run is not paused) → report, interrupt (SIGINT; a second idle period
    escalates to cancel) or cancel;
  * after the ``result`` line: ``post_result_grace`` for the run to end by itself, then the
    ladder (the CLI is known to hang after its result);
  * the run's claim on its Claude session id (``ClaudeSessions``), released when it ends.
"""

from __future__ import annotations

import os
import signal
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import structlog
import trio
from trio_websocket import ConnectionClosed

from cc_executor.executor.claude.policy import check_flags, claude_environment
from cc_executor.executor.rpc.session import Handled, RunSlot, Session, cancel_quietly
from cc_executor.executor.runs.admission import check_capacity, start_runner
from cc_executor.executor.runs.limits import release_when_done
from cc_executor.executor.runs.wire import completion_params
from cc_executor.protocol import (
    JSON,
    InvalidParams,
    InvalidState,
    LimitExceeded,
    ShuttingDown,
    SpawnFailed,
)
from cc_executor.protocol.claude import (
    CLAUDE_EVENT,
    ClaudeEvent,
    ClaudeParams,
    Init,
    Result,
    StreamJsonParser,
    build_argv,
    event_params,
    result_summary,
)
from cc_executor.supervision import (
    Cancelled,
    CompletedEvent,
    Exited,
    Output,
    OutputPump,
    Run,
    RunState,
    SequencedEvent,
    SinkClosed,
    SpawnError,
    SpawnSpec,
)
from cc_executor.supervision.signalling import kill_group

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon

log = structlog.get_logger()

# Reasons the profile itself ends a run (anything else that cancels a run is the client's).
LINGERED = "the CLI lingered after its result"
WATCHDOG = "watchdog: no stream-json event"

# -- one run at a time per Claude session ---------------------------------------------------


class ClaudeSessions:
    """Which run holds which Claude session, daemon-wide."""

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}
        self._freed: dict[str, trio.Event] = {}

    def holder(self, key: str) -> str | None:
        return self._holders.get(key)

    def claim(self, key: str, run_id: str) -> bool:
        """Take `key` for `run_id`; False if another run holds it."""
        holder = self._holders.setdefault(key, run_id)
        return holder == run_id

    def release(self, key: str, run_id: str) -> None:
        if self._holders.get(key) == run_id:
            del self._holders[key]
            freed = self._freed.pop(key, None)
            if freed is not None:
                freed.set()

    async def wait_free(self, key: str) -> None:
        while key in self._holders:
            await self._freed.setdefault(key, trio.Event()).wait()


_SESSIONS: weakref.WeakKeyDictionary[Daemon, ClaudeSessions] = weakref.WeakKeyDictionary()


def sessions_of(daemon: Daemon) -> ClaudeSessions:
    """The daemon's Claude session table (one per daemon, made on first use)."""
    table = _SESSIONS.get(daemon)
    if table is None:
        table = _SESSIONS[daemon] = ClaudeSessions()
    return table


def session_key(params: ClaudeParams) -> str | None:
    """The Claude session a request will write to, when it can be known before the start."""
    if params.claude_session is not None:
        return params.claude_session
    if params.continue_session and not params.fork_session:
        return f"continue:{os.path.realpath(params.cwd or os.getcwd())}"
    return None


# -- the stream ------------------------------------------------------------------------------


class ClaudeStream:
    """One Claude run's delivery (raw, then typed) and its watcher (watchdog, post-result)."""

    def __init__(
        self,
        daemon: Daemon,
        session: Session,
        run: Run,
        params: ClaudeParams,
        base: Callable[[SequencedEvent], Awaitable[None]],
        claims: list[str],
    ) -> None:
        config = daemon.config.claude
        self._session = session
        self._run = run
        self._base = base
        self._sessions = sessions_of(daemon)
        self._claims = claims
        self._parser = StreamJsonParser(config.max_line_bytes)
        self._idle = params.idle_timeout if params.idle_timeout is not None else config.idle_timeout
        self._action = params.idle_action or config.idle_action
        self._grace = config.post_result_grace
        self.init: Init | None = None
        self.result: Result | None = None
        self.lingered = False
        self.watchdog_fired = 0
        self._result_seen = trio.Event()
        self._completed = False
        self._delivering = False
        self._last_activity = trio.current_time()
        self._scope: trio.CancelScope | None = None

    # -- delivery (called by the pump) -------------------------------------------------

    async def deliver(self, event: SequencedEvent) -> None:
        if isinstance(event, CompletedEvent):
            await self._send_typed(self._parser.close())
            params = completion_params(self._run, event.completed)
            params["status"] = self._status(event.completed.outcome, str(params["status"]))
            params["claude"] = {
                **result_summary(self.result, self.init.session_id if self.init else None),
                "lingered": self.lingered,
                "watchdog_fired": self.watchdog_fired,
            }
            self._completed = True
            conn = self._session.conn
            text = conn.run_event(self._run.run_id, event.seq, "process.completed", params)
            await self._send_text(text)
            return
        if not (isinstance(event, Output) and event.stream == "stdout"):
            await self._base(event)
            return
        self._delivering = True
        self._rearm()
        try:
            await self._base(event)
            await self._send_typed(self._parser.feed(event.data))
        finally:
            self._delivering = False
            self._last_activity = trio.current_time()
            self._rearm()

    async def _send_typed(self, events: list[ClaudeEvent]) -> None:
        for typed in events:
            if isinstance(typed, Init) and self.init is None:
                self.init = typed
                self._claim_init(typed)
            elif isinstance(typed, Result) and self.result is None:
                self.result = typed
                self._result_seen.set()
            await self._notify(event_params(typed))

    async def _send_text(self, text: str) -> None:
        try:
            await self._session.ws.send_message(text)
        except ConnectionClosed as exc:
            raise SinkClosed("the client is gone") from exc  # the pump discards the rest

    async def _notify(self, params: dict[str, JSON]) -> None:
        text = self._session.conn.notify(CLAUDE_EVENT, {"run": self._run.run_id, **params})
        await self._send_text(text)

    def _claim_init(self, init: Init) -> None:
        key = init.session_id
        if key is None or key in self._claims:
            return
        if self._sessions.claim(key, self._run.run_id):
            self._claims.append(key)
        else:
            log.warning(
                "claude.session_busy",
                claude_session=key,
                holder=self._sessions.holder(key),
            )

    def _status(self, outcome: object, status: str) -> str:
        """The completion's status: the `result` line decides, unless the client cancelled."""
        if isinstance(outcome, Cancelled) and not outcome.reason.startswith((LINGERED, WATCHDOG)):
            return status
        if self.result is None or self.result.failed:
            return "failed"
        if self.lingered or outcome == Exited(0):
            return "completed"
        return "failed"

    # -- the watcher (a task in the session's nursery) ---------------------------------

    async def watch(self) -> None:
        """Watchdog, then post-result grace; returns once the run is over."""
        try:
            async with trio.open_nursery() as nursery:

                async def end_with_run() -> None:
                    await self._run.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(end_with_run)
                await self._watchdog()
                await self._after_result()
        finally:
            for key in self._claims:
                self._sessions.release(key, self._run.run_id)

    def _idle_deadline(self) -> float:
        if self._idle is None or self._delivering:
            return float("inf")
        return self._last_activity + self._idle

    def _rearm(self) -> None:
        if self._scope is not None:
            self._scope.deadline = self._idle_deadline()

    async def _watchdog(self) -> None:
        interrupted = False
        while not self._result_seen.is_set():
            with trio.CancelScope(deadline=self._idle_deadline()) as scope:
                self._scope = scope
                await self._result_seen.wait()
            self._scope = None
            if not scope.cancelled_caught:
                return
            if self._run.state is RunState.PAUSED:
                self._last_activity = trio.current_time()  # paused: not idle
                continue
            if trio.current_time() < self._idle_deadline():
                continue  # output arrived as the deadline passed
            self.watchdog_fired += 1
            action = self._action
            if action == "interrupt" and interrupted:
                action = "cancel"  # the interrupt did not end it: escalate
            log.info("claude.watchdog", run=self._run.run_id, idle=self._idle, action=action)
            if not self._completed:
                await self._notify(
                    {"type": "watchdog", "idle_seconds": self._idle, "action": action}
                )
            self._last_activity = trio.current_time()
            if action == "interrupt":
                interrupted = True
                kill_group(self._run.pgid, signal.SIGINT)
            elif action == "cancel":
                await cancel_quietly(self._run, f"{WATCHDOG} for {self._idle} s")
                return

    async def _after_result(self) -> None:
        if not self._result_seen.is_set():
            return
        with trio.move_on_after(self._grace):
            await self._run.wait_ending()
            return
        log.info("claude.lingered", run=self._run.run_id, grace=self._grace)
        self.lingered = True
        await cancel_quietly(self._run, LINGERED)


# -- the method ------------------------------------------------------------------------------


@attrs.frozen
class _Prepared:
    spec: SpawnSpec
    key: str | None


def _prepare(daemon: Daemon, session: Session, params: ClaudeParams) -> _Prepared:
    config = daemon.config.claude
    if params.prompt is not None and len(params.prompt.encode()) > config.max_prompt_bytes:
        raise InvalidParams(
            f"the prompt is longer than {config.max_prompt_bytes} bytes; send it with "
            "input 'stream-json' through stdin",
            {"limit": "claude.max_prompt_bytes", "value": config.max_prompt_bytes},
        )
    check_flags(params, config)
    argv = build_argv(config.binary, params)
    env = claude_environment(daemon, params.env)
    # The command rules, cwd roots, rlimits and output limit hold as for `execute`.
    cwd = daemon.policy.check_claude(argv, params.cwd, env)
    spec = SpawnSpec(
        argv=argv,
        env=env,
        cwd=cwd,
        stdin="pipe" if params.input == "stream-json" else "null",
        run_id=daemon.new_run_id(),
    )
    spec = daemon.policy.limited(spec, session.peer.identity.name)
    return _Prepared(spec, session_key(params))


async def _start(
    daemon: Daemon, session: Session, params: ClaudeParams, prepared: _Prepared
) -> RunSlot:
    """Spawn the run and set up its slot, stream and watcher; the caller starts streaming."""
    config = daemon.config
    claude = config.claude
    spec = prepared.spec
    supervision = attrs.evolve(config.supervision, interrupt_grace=claude.interrupt_grace)
    claims: list[str] = []
    if prepared.key is not None and not sessions_of(daemon).claim(prepared.key, spec.run_id):
        raise _busy(prepared.key, sessions_of(daemon))
    if prepared.key is not None:
        claims.append(prepared.key)
    try:
        ticket = daemon.policy.limits.admit(session.peer.identity.name)
    except LimitExceeded:
        for key in claims:
            sessions_of(daemon).release(key, spec.run_id)
        raise
    try:
        run, receive = await start_runner(
            session.nursery,
            spec,
            supervision,
            daemon.registry,
            timeout=params.timeout if params.timeout is not None else claude.timeout,
        )
    except SpawnError as exc:
        ticket.release()
        for key in claims:
            sessions_of(daemon).release(key, spec.run_id)
        raise SpawnFailed(exc.message, {"argv0": spec.argv[0]}) from None
    session.nursery.start_soon(release_when_done, ticket, run)
    slot = session.add_run(run, receive)
    # The session's own deliverer sends raw output, pause/resume as for any run.
    stream = ClaudeStream(daemon, session, run, params, session._deliverer(run), claims)
    # The session's pump is not started yet: give the slot one that delivers through the
    # Claude stream (raw output first, then its typed events).
    slot.pump = OutputPump(receive, stream.deliver, supervision, run.unread_bytes)
    daemon.run_started(slot.run, claude=True)
    session.nursery.start_soon(stream.watch)
    log.info("claude.start", run=run.run_id, claude_session=prepared.key)
    return slot


def _busy(key: str, table: ClaudeSessions) -> InvalidState:
    holder = table.holder(key)
    return InvalidState(
        f"Claude session {key} is busy with run {holder} (rule: claude.busy_session=refuse)",
        {"claude_session": key, "run": holder, "state": "busy"},
    )


async def claude(daemon: Daemon, session: Session, params: ClaudeParams) -> Handled:
    """Start a Claude Code run; its output and typed events flow once the reply is sent."""
    check_capacity(daemon, session.live_runs)
    prepared = _prepare(daemon, session, params)
    table = sessions_of(daemon)
    key = prepared.key
    if key is not None and table.holder(key) is not None:
        if daemon.config.claude.busy_session == "refuse":
            raise _busy(key, table)
        return _queue(daemon, session, params, prepared)
    slot = await _start(daemon, session, params, prepared)
    run = slot.run

    async def follow_up() -> None:
        await session.start_streaming(slot)

    return Handled(
        {"status": "started", "run": run.run_id, "pid": run.pid, "pgid": run.pgid},
        follow_up,
    )


def _queue(daemon: Daemon, session: Session, params: ClaudeParams, prepared: _Prepared) -> Handled:
    """Reply `queued` now; start the run once its Claude session is free."""
    key = prepared.key
    assert key is not None
    run_id = prepared.spec.run_id

    async def start_when_free() -> None:
        table = sessions_of(daemon)
        while True:
            await table.wait_free(key)
            if table.holder(key) is None:
                break
        try:
            check_capacity(daemon, session.live_runs)
            slot = await _start(daemon, session, params, prepared)
        except (SpawnFailed, LimitExceeded, ShuttingDown, InvalidState) as exc:
            log.info("claude.queued_start_failed", run=run_id, error=exc.message)
            params_: dict[str, JSON] = {
                "status": "failed",
                "outcome": "spawn_failed",
                "reason": exc.message,
                "exit_code": None,
                "signal": None,
                "claude": {"has_result": False, "session_id": key},
            }
            await session.send(session.conn.run_event(run_id, 1, "process.completed", params_))
            return
        await session.start_streaming(slot)

    async def follow_up() -> None:
        session.nursery.start_soon(start_when_free)

    return Handled({"status": "queued", "run": run_id, "claude_session": key}, follow_up)
