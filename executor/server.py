"""The daemon: the WebSocket listener, the run table, limits, and a bounded graceful shutdown.

Theory of operation
-------------------
``serve`` opens the daemon's nursery, makes the daemon a child subreaper (orphans of runs are
reparented to us, never to init, so they can be found and reaped), starts the reaper, and serves
WebSocket connections through trio-websocket.  Each accepted connection becomes a ``Session``
inside the per-connection error boundary (``_handle``): whatever goes wrong inside one session
is logged and closes that session with 1011, and never reaches the listener — trio-websocket
would otherwise take the whole server down with a handler's exception.

Shutdown (``shutdown``) is graceful and bounded: stop accepting runs, tell every client, end
every run through the cancel ladder, close every connection with 1001, then return; the caller
cancels the nursery.  Durable runs (durable.py) live in the daemon's own nursery and are ended
with the others on a graceful shutdown, so their journals say why they ended; after a SIGKILL the
next daemon finds them without a completion and reports them lost.  If that bound is exceeded,
cancellation reaches each runner, whose shielded
``finally`` kills its tree: the bound holds either way.
"""

from __future__ import annotations

import os
import secrets
import signal
from functools import partial
from typing import Any

import structlog
import trio
from trio_websocket import WebSocketRequest, WebSocketServer, serve_websocket

from cc_executor.executor import dispatch
from cc_executor.executor.config import ServerConfig
from cc_executor.executor.durable import DurableRun, DurableRuns
from cc_executor.executor.policy import CommandPolicy
from cc_executor.executor.session import Handled, RunSlot, Session
from cc_executor.protocol import JSON, METHODS, InternalError, LimitExceeded
from cc_executor.supervision import RunRegistry, enable_subreaper, run_reaper

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
        self.draining = False
        self.started_at = trio.current_time()
        self.live_runs = 0
        self.runs_started = 0
        self.instance = f"{os.uname().nodename}-{os.getpid()}"
        self.durable = DurableRuns(config, self.instance)
        self._nursery: trio.Nursery | None = None
        missing = set(METHODS) - set(dispatch.SESSION_HANDLERS) - set(dispatch.RUN_HANDLERS)
        assert not missing, f"methods without a handler: {sorted(missing)}"

    # -- sessions --------------------------------------------------------------------------

    async def handle(self, request: WebSocketRequest) -> None:
        """The per-connection error boundary (see the module docstring)."""
        path = request.path.split("?", 1)[0]
        if path not in self.config.paths:
            await request.reject(404, body=f"no WebSocket endpoint at {path}\n".encode())
            return
        ws = await request.accept()
        if len(self.sessions) >= self.config.max_connections:
            session = Session(self, ws)
            error = LimitExceeded(
                f"connection limit reached (max_connections={self.config.max_connections})",
                {"limit": "max_connections", "value": self.config.max_connections},
            )
            await session.send(session.conn.encode(session.conn.make_error(None, error)))
            log.warning("session.refused", reason="max_connections")
            await session.close(1013, "connection limit reached")
            return
        session = Session(self, ws)
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
        return await dispatch.RUN_HANDLERS[method](self, session, slot, params)

    # -- runs ------------------------------------------------------------------------------

    def new_run_id(self) -> str:
        return secrets.token_hex(8)

    def run_started(self, session: Session, slot: RunSlot) -> None:
        self.live_runs += 1
        self.runs_started += 1
        run = slot.run
        log.info("run.start", run=run.run_id, argv0=run.argv[0], pid=run.pid, pgid=run.pgid)

    def run_finished(self, session: Session, slot: RunSlot) -> None:
        self.live_runs -= 1
        run = slot.run
        log.info(
            "run.end",
            run=run.run_id,
            argv0=run.argv[0],
            outcome=type(run.outcome).__name__ if run.outcome else None,
            detail=str(run.outcome),
            duration=round(trio.current_time() - run.started_at, 3),
            stdout_bytes=run.stdout_bytes,
            stderr_bytes=run.stderr_bytes,
            last_seq=slot.pump.last_seq,
        )

    def durable_started(self, durable: DurableRun) -> None:
        self.live_runs += 1
        self.runs_started += 1
        run = durable.run
        assert run is not None
        log.info(
            "run.start",
            run=run.run_id,
            argv0=run.argv[0],
            pid=run.pid,
            pgid=run.pgid,
            durable=True,
            journal=durable.journal.path,
        )

    def durable_finished(self, durable: DurableRun) -> None:
        self.live_runs -= 1
        journal = durable.journal
        completed = journal.completed
        log.info(
            "run.end",
            run=durable.run_id,
            argv0=journal.meta.argv[0],
            outcome=type(completed.completed.outcome).__name__ if completed else None,
            detail=str(completed.completed.outcome) if completed else "not journaled",
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
            "connections": len(self.sessions),
            "live_runs": self.live_runs,
            "runs_started": self.runs_started,
            "durable_runs": len(self.durable.runs),
            "live_durable_runs": self.durable.live_count,
            "state_dir": self.config.state_dir,
            "draining": self.draining,
        }

    # -- shutdown --------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop taking runs, tell clients, end every run through the ladder, close sockets."""
        self.draining = True
        log.info("daemon.draining", connections=len(self.sessions), live_runs=self.live_runs)
        sessions = list(self.sessions)
        with trio.move_on_after(self.run_end_bound() + self.config.connect_timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.durable.end_all, "daemon shutdown")
                for session in sessions:
                    nursery.start_soon(self._shut_session, session)

    async def _shut_session(self, session: Session) -> None:
        await session.send_notification(
            "shutdown", {"reason": "the daemon is shutting down; runs are being cancelled"}
        )
        await session.end_runs("daemon shutdown")
        # Let attached clients see their durable runs' completions before the close.
        for durable in list(self.durable.runs.values()):
            await durable.done.wait()
        for attachment in list(session.attachments.values()):
            await attachment.done.wait()
        await session.close(1001, "server shutting down")


async def serve(
    config: ServerConfig,
    *,
    task_status: trio.TaskStatus[tuple[Daemon, WebSocketServer]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``nursery.start(serve, config)`` returns (daemon, server)."""
    daemon = Daemon(config)
    subreaper = enable_subreaper()
    await daemon.durable.recover()
    async with trio.open_nursery() as nursery:
        daemon._nursery = nursery
        await nursery.start(run_reaper, daemon.registry)
        await nursery.start(daemon.durable.run_retention)
        server: WebSocketServer = await nursery.start(
            partial(
                serve_websocket,
                daemon.handle,
                config.host,
                config.port,
                None,
                max_message_size=config.max_message_bytes,
                receive_buffer_size=config.receive_buffer_bytes,
                connect_timeout=config.connect_timeout,
                disconnect_timeout=config.connect_timeout,
            )
        )
        ports = [listener.port for listener in server.listeners]  # type: ignore[union-attr]
        log.info(
            "daemon.listening",
            host=config.host,
            ports=ports,
            pid=os.getpid(),
            subreaper=subreaper,
            allow_shell=config.allow_shell,
            allow_list=list(config.allowed_commands) if config.allowed_commands else "any",
        )
        task_status.started((daemon, server))
        await trio.sleep_forever()


async def serve_until_signalled(config: ServerConfig) -> None:
    """``ccx serve``: serve until SIGTERM or SIGINT, then shut down gracefully and return."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            daemon, _server = await nursery.start(serve, config)
            async for signum in signals:
                log.info("daemon.signal", signal=signal.Signals(signum).name)
                break
            await daemon.shutdown()
            nursery.cancel_scope.cancel()
    log.info("daemon.stopped")
