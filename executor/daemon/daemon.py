"""The daemon's shared state: configuration, policy, the run table, counters, and shutdown.

Theory of operation
-------------------
Each accepted connection becomes a session inside the per-connection error boundary
(``handle``): whatever goes wrong inside one session is logged and closes that session with
1011, and never reaches the listener (serve.py).

Shutdown (``shutdown``) is graceful and bounded: stop accepting runs (``/readyz`` turns 503),
tell every client, let runs finish for up to ``shutdown_grace`` seconds, end the rest through
the cancel ladder, close every connection with 1001, then return; the caller cancels the
nursery.  Durable runs (runs/durable.py) live in the daemon's own nursery and are ended
with the others on a graceful shutdown, so their journals say why they ended; after a SIGKILL the
next daemon finds them without a completion and reports them lost.  If that bound is exceeded,
cancellation reaches each runner, whose shielded ``finally`` kills its tree: the bound holds
either way.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog
import trio
from trio_websocket import WebSocketConnection

from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.daemon.metrics import Metrics, render
from cc_executor.executor.mcp.session import McpSession, serve_mcp
from cc_executor.executor.rpc import handlers as dispatch
from cc_executor.executor.rpc.session import Handled, RunSlot, Session
from cc_executor.executor.runs.durable import DurableRun, DurableRuns
from cc_executor.executor.runs.policy import CommandPolicy
from cc_executor.executor.runs.wire import outcome_name
from cc_executor.executor.transport.frontdoor import Peer
from cc_executor.protocol import JSON, METHODS, InternalError, LimitExceeded
from cc_executor.protocol.mcp import SUBPROTOCOL
from cc_executor.supervision import Run, RunRegistry

log = structlog.get_logger()

VERSION = "0.1.0"
CAPABILITIES = (
    "execute",
    "control",
    "stream",
    "argv",
    "shell",
    "stdin",
    "signal",
    "status",
    "list",
    "seq",
    "base64",
    "timeouts",
    "batch",
    "durable",
    "attach",
)


class Daemon:
    """State shared by every session: configuration, policy, the run table, counters."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.policy = CommandPolicy(config)
        self.registry = RunRegistry()
        self.sessions: set[Session] = set()
        self.mcp_sessions: set[McpSession] = set()
        self.draining = False
        self.started_at = trio.current_time()
        self.live_runs = 0
        self.runs_started = 0
        self.instance = config.instance
        self.durable = DurableRuns(config, self.instance)
        self.metrics = Metrics()
        self._nursery: trio.Nursery | None = None
        self._idle = trio.Event()  # set while no run is live (for the drain)
        self._idle.set()
        self._hurry = trio.Event()  # set by a second SIGTERM/SIGINT: skip the drain's grace
        missing = set(METHODS) - set(dispatch.SESSION_HANDLERS) - set(dispatch.RUN_HANDLERS)
        assert not missing, f"methods without a handler: {sorted(missing)}"

    # -- sessions --------------------------------------------------------------------------

    async def handle(self, ws: WebSocketConnection, peer: Peer) -> None:
        """The per-connection error boundary (see the module docstring)."""
        if ws.subprotocol == SUBPROTOCOL:
            await serve_mcp(self, ws, peer)  # MCP: its own session, with its own boundary
            return
        if len(self.sessions) >= self.config.max_connections:
            self.metrics.refused("max_connections")
            session = Session(self, ws, peer)
            error = LimitExceeded(
                f"connection limit reached (max_connections={self.config.max_connections})",
                {"limit": "max_connections", "value": self.config.max_connections},
            )
            await session.send(session.conn.encode(session.conn.make_error(None, error)))
            log.warning("session.refused", reason="max_connections")
            await session.close(1013, "connection limit reached")
            return
        session = Session(self, ws, peer)
        self.sessions.add(session)
        try:
            await session.serve()
        except Exception:
            log.exception("session.crashed", session=session.session_id)
            internal = InternalError("internal error; the session is closed", None)
            with trio.move_on_after(self.config.connect_timeout, shield=True):
                await session.send(session.conn.encode(session.conn.make_error(None, internal)))
                await ws.aclose(1011, "internal error")
        finally:
            self.sessions.discard(session)

    def greeting(self, session: Session) -> dict[str, JSON]:
        """Params of the ``connected`` notification every client gets first."""
        return {
            "session_id": session.session_id,
            "version": VERSION,
            "server": "cc-executor",
            "capabilities": list(CAPABILITIES),
            "limits": {
                "max_message_bytes": self.config.max_message_bytes,
                "max_frame_bytes": self.config.max_frame_bytes,
                "max_runs_per_connection": self.config.max_runs_per_connection,
            },
        }

    # -- dispatch --------------------------------------------------------------------------

    async def dispatch(self, session: Session, method: str, params: Any) -> Handled:
        return await dispatch.SESSION_HANDLERS[method](self, session, params)

    async def dispatch_run(
        self, session: Session, slot: RunSlot, method: str, params: Any
    ) -> Handled:
        if method != "control":
            return await dispatch.RUN_HANDLERS[method](self, session, slot, params)
        started = trio.current_time()
        try:
            return await dispatch.RUN_HANDLERS[method](self, session, slot, params)
        finally:
            self.metrics.control_seconds.observe(params.type, trio.current_time() - started)

    # -- probes ----------------------------------------------------------------------------

    def probe(self, path: str) -> tuple[int, bytes, str] | None:
        """Answers to GET /healthz (alive), /readyz (accepting runs) and /metrics."""
        text = "text/plain; charset=utf-8"
        if path == "/healthz":
            return 200, b"ok\n", text
        if path == "/readyz":
            return (503, b"draining\n", text) if self.draining else (200, b"ready\n", text)
        if path == "/metrics":
            page = render(
                self.metrics,
                connections=len(self.sessions) + len(self.mcp_sessions),
                runs_by_state=self._runs_by_state(),
                draining=self.draining,
            )
            return 200, page.encode(), "text/plain; version=0.0.4; charset=utf-8"
        return None

    def _runs_by_state(self) -> dict[str, int]:
        counts = {"running": 0, "paused": 0, "ending": 0}
        for run in self.registry.runs():
            if run.state.value in counts:
                counts[run.state.value] += 1
        return counts

    # -- runs ------------------------------------------------------------------------------

    def new_run_id(self) -> str:
        return secrets.token_hex(8)

    def _run_began(self) -> None:
        self.live_runs += 1
        self.runs_started += 1
        self.metrics.runs_started += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def _run_ended(self, run: Run | None, outcome: str) -> None:
        self.live_runs -= 1
        self.metrics.runs_completed[outcome] += 1
        if run is not None:
            self.metrics.stream_bytes["stdout"] += run.stdout_bytes
            self.metrics.stream_bytes["stderr"] += run.stderr_bytes
            self.metrics.backpressure_stalls += run.stalls
        if self.live_runs == 0:
            self._idle.set()

    def run_started(self, run: Run, **context: object) -> None:
        """Count a run in (drain, metrics) and write its start line."""
        self._run_began()
        log.info(
            "run.start", run=run.run_id, argv0=run.argv[0], pid=run.pid, pgid=run.pgid, **context
        )

    def run_finished(self, run: Run, last_seq: int, **context: object) -> None:
        """Count a run out and write its one summary line."""
        self._run_ended(run, outcome_name(run.outcome))
        log.info(
            "run.end",
            run=run.run_id,
            argv0=run.argv[0],
            outcome=type(run.outcome).__name__ if run.outcome else None,
            detail=run.outcome,  # logs.py renders it as plain values
            duration=round(trio.current_time() - run.started_at, 3),
            stdout_bytes=run.stdout_bytes,
            stderr_bytes=run.stderr_bytes,
            last_seq=last_seq,
            **context,
        )

    def durable_started(self, durable: DurableRun) -> None:
        assert durable.run is not None
        self.run_started(durable.run, durable=True, journal=durable.journal.path)

    def durable_finished(self, durable: DurableRun) -> None:
        journal = durable.journal
        completed = journal.completed
        self._run_ended(
            durable.run, outcome_name(completed.completed.outcome if completed else None)
        )
        log.info(
            "run.end",
            run=durable.run_id,
            argv0=journal.meta.argv[0],
            outcome=type(completed.completed.outcome).__name__ if completed else None,
            detail=completed.completed.outcome if completed else "not journaled",
            stdout_bytes=completed.completed.stdout_bytes if completed else None,
            stderr_bytes=completed.completed.stderr_bytes if completed else None,
            last_seq=journal.last_seq,
            durable=True,
            journal_bytes=journal.size,
        )

    @property
    def nursery(self) -> trio.Nursery:
        """The daemon's own nursery, where durable runs live."""
        assert self._nursery is not None, "daemon not serving"
        return self._nursery

    def run_end_bound(self) -> float:
        """How long ending a run through the whole ladder can take."""
        sup = self.config.supervision
        return sup.term_grace + sup.kill_wait + sup.drain_timeout + 1.0

    def status(self) -> dict[str, JSON]:
        return {
            "server": "cc-executor",
            "version": VERSION,
            "instance": self.instance,
            "uptime": round(trio.current_time() - self.started_at, 3),
            "connections": len(self.sessions) + len(self.mcp_sessions),
            "live_runs": self.live_runs,
            "runs_started": self.runs_started,
            "durable_runs": len(self.durable.runs),
            "live_durable_runs": self.durable.live_count,
            "state_dir": self.config.state_dir,
            "draining": self.draining,
        }

    # -- shutdown --------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop taking runs, tell clients, let runs finish for up to ``shutdown_grace``, end
        the rest through the ladder, close sockets."""
        self.draining = True
        grace = self.config.shutdown_grace
        log.info(
            "daemon.draining",
            connections=len(self.sessions),
            live_runs=self.live_runs,
            grace=grace,
        )
        sessions = list(self.sessions)
        notice: dict[str, JSON] = {
            "reason": "the daemon is shutting down",
            "grace": grace,
            "then": "live runs are cancelled",
        }
        with trio.move_on_after(self.config.connect_timeout):
            async with trio.open_nursery() as nursery:
                for session in sessions:
                    nursery.start_soon(session.send_notification, "shutdown", notice)
        with trio.move_on_after(grace):
            async with trio.open_nursery() as either:
                for event in (self._idle, self._hurry):
                    either.start_soon(_then_cancel, event, either.cancel_scope)
        with trio.move_on_after(self.run_end_bound() + self.config.connect_timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.durable.end_all, "daemon shutdown")
                for session in sessions:
                    nursery.start_soon(self._shut_session, session)
                for mcp_session in list(self.mcp_sessions):
                    nursery.start_soon(mcp_session.shut)

    def hurry(self) -> None:
        """End the drain's grace now: live runs go through the ladder at once."""
        self._hurry.set()

    async def _shut_session(self, session: Session) -> None:
        await session.end_runs("daemon shutdown")
        # Let attached clients see their durable runs' completions before the close.
        for durable in list(self.durable.runs.values()):
            await durable.done.wait()
        for attachment in list(session.attachments.values()):
            await attachment.done.wait()
        await session.close(1001, "server shutting down")


async def _then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
