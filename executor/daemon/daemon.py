"""The daemon's shared state: configuration, policy, the run table, counters, and shutdown.

Theory of operation
-------------------
Each accepted connection is served by the connection boundary (transport/connection.py), which
asks ``open_session`` for the session kind its subprotocol picks and counts every open session,
of any kind, in ``sessions``: whatever goes wrong inside one session is logged and closes that
session with 1011, and never reaches the listener.

Shutdown (``shutdown``) is graceful and bounded: stop accepting runs (``/readyz`` turns 503),
tell every client, let runs finish for up to ``shutdown_grace`` seconds, end the rest through
the cancel ladder, close every connection with 1001, then return; the caller cancels the
nursery.  Connections are still accepted meanwhile: a session that joins during the drain is
told at its start, and closed at once if the drain is already closing sessions.

Durable runs (runs/durable.py) live in the daemon's own nursery and are ended with the others
on a graceful shutdown, so their journals say why they ended; after a SIGKILL the next daemon
finds them without a completion and reports them lost.  If the drain's bound is exceeded,
cancellation reaches each runner, whose shielded ``finally`` kills its tree: the bound holds
either way.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import structlog
import trio

from cc_executor.executor import VERSION
from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.daemon.metrics import Metrics, render
from cc_executor.executor.logs import log_writer
from cc_executor.executor.mcp.runs import FollowedRuns
from cc_executor.executor.mcp.session import McpSession
from cc_executor.executor.mcp.tasks import TaskTable
from cc_executor.executor.rpc.session import Session
from cc_executor.executor.runs.claims import Claims
from cc_executor.executor.runs.durable import DurableRuns
from cc_executor.executor.runs.policy import CommandPolicy
from cc_executor.executor.runs.table import RunTable
from cc_executor.executor.transport.frontdoor import Identity, Peer
from cc_executor.executor.transport.inbound import AssemblyBudget
from cc_executor.executor.transport.websocket import ServerWebSocket
from cc_executor.protocol.binary import BINARY_SUBPROTOCOL
from cc_executor.protocol.mcp import SUBPROTOCOL
from cc_executor.protocol.notices import Connected, Shutdown
from cc_executor.protocol.results import DaemonInfo
from cc_executor.supervision import RunRegistry

log = structlog.get_logger()

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
    "claude",  # the `claude` method (docs/claude.md)
    "claude.session",  # session runs and the claude.* methods
    "binary",  # output as binary frames to a client that offers ccx.binary.v1
)


class Daemon:
    """The daemon's state, as named parts, and its shutdown.

    Parts: ``config``; ``policy`` (command rules and per-identity limits); ``registry``
    (supervision's process roots); ``runs`` (every live and recently completed run, runs/table.py);
    ``durable`` (journals, runs/durable.py); ``claims`` (one run per Claude session);
    ``tasks`` (MCP tasks); ``followed`` (MCP's view of each durable run it follows, mcp/runs.py);
    ``metrics``; ``sessions`` (open connections, both protocols).
    """

    def __init__(self, config: ServerConfig, daemon_id: str | None = None) -> None:
        self.config = config
        self.policy = CommandPolicy(config)
        # `daemon_id` marks every process of its runs (daemon/record.py).
        self.registry = RunRegistry(daemon_id)
        self.metrics = Metrics()
        self.runs = RunTable(self.metrics, config.completed_runs_kept)
        self.durable = DurableRuns(config, config.instance)
        self.claims = Claims()
        self.tasks = TaskTable(config.mcp.max_tasks)
        self.followed = FollowedRuns()  # MCP's one view of each durable run it follows
        # Open sessions of every kind (JSON-RPC and MCP): the one max_connections count.
        self.sessions: set[Session | McpSession] = set()
        # What all connections may hold of the messages they are receiving (inbound.py).
        self.assembly = AssemblyBudget(
            max(config.transport.assembly_bytes, config.max_message_bytes)
        )
        self.instance = config.instance
        self.draining = False
        # Set as the drain starts, for the sessions that connect during it: they are told as
        # the others were; once `closing` (the drain is ending runs and closing sessions) they
        # are closed at once.  See shutdown().
        self.shutdown_notice: Shutdown | None = None
        self.closing = False
        self.started_at = trio.current_time()
        self._nursery: trio.Nursery | None = None
        self._hurry = trio.Event()  # set by a second SIGTERM/SIGINT: skip the drain's grace

    # -- sessions --------------------------------------------------------------------------

    def open_session(self, ws: ServerWebSocket, peer: Peer) -> Session | McpSession:
        """The one place a connection's session kind is picked: by the subprotocol chosen."""
        return SESSION_KINDS[ws.subprotocol](self, ws, peer)

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """The WebSocket subprotocols we speak (a client offering none gets JSON-RPC)."""
        return tuple(name for name in SESSION_KINDS if name is not None)

    def greeting(self, session_id: str) -> Connected:
        """The ``connected`` notification every JSON-RPC client gets first."""
        return Connected(
            session_id=session_id,
            version=VERSION,
            server="cc-executor",
            capabilities=CAPABILITIES,
            limits={
                "max_message_bytes": self.config.max_message_bytes,
                "max_frame_bytes": self.config.max_frame_bytes,
                "max_runs_per_connection": self.config.max_runs_per_connection,
            },
        )

    # -- probes ----------------------------------------------------------------------------

    def probe(self, path: str) -> tuple[int, bytes, str] | None:
        """Answers to GET /healthz (alive), /readyz (accepting runs), /metrics, and /health
        (alive, as JSON in the original CC-Executor's shape, for its clients and Dockerfile)."""
        from cc_executor.protocol.health import health_document

        text = "text/plain; charset=utf-8"
        if path == "/healthz":
            return 200, b"ok\n", text
        if path == "/health":
            body = health_document(
                version=VERSION,
                active_sessions=len(self.sessions),
                max_sessions=self.config.max_connections,
                uptime_seconds=trio.current_time() - self.started_at,
                draining=self.draining,
            )
            return 200, body, "application/json"
        if path == "/readyz":
            return (503, b"draining\n", text) if self.draining else (200, b"ready\n", text)
        if path == "/metrics":
            writer = log_writer()
            page = render(
                self.metrics,
                connections=len(self.sessions),
                runs_by_state=self._runs_by_state(),
                draining=self.draining,
                log_lines_lost=0 if writer is None else writer.lost,
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

    def new_run_id(self, durable: bool) -> str:
        """A run id: a durable run's also names this instance (see DurableRuns.new_run_id)."""
        return self.durable.new_run_id() if durable else secrets.token_hex(8)

    @property
    def nursery(self) -> trio.Nursery:
        """The daemon's own nursery, where durable runs live."""
        assert self._nursery is not None, "daemon not serving"
        return self._nursery

    def start_owned(
        self, where: str, task: Callable[..., Awaitable[object]], *args: object
    ) -> None:
        """Start `task` in the daemon's nursery under its own boundary: an unexpected error is
        logged once with its traceback, counted in ``ccx_internal_errors_total{where=...}``
        and ends that task alone, never the daemon (cancellation passes through)."""

        async def owned() -> None:
            try:
                await task(*args)
            except Exception:
                log.exception("task.failed", where=where, task=getattr(task, "__name__", None))
                self.metrics.internal_error(where)

        self.nursery.start_soon(owned)

    def run_end_bound(self) -> float:
        """How long ending a run through the whole ladder can take."""
        sup = self.config.supervision
        grace = sup.interrupt_grace or 0.0
        interrupt = max(grace, self.config.claude.interrupt_grace)
        return interrupt + sup.term_grace + sup.kill_wait + sup.drain_timeout + 1.0

    async def status(self, identity: Identity) -> DaemonInfo:
        """``status {}``: daemon-wide for an admin (or without authentication), else the
        caller's own runs only."""
        everything = identity.admin or self.config.tokens is None
        live = [r for r in self.runs.live_runs() if everything or r.visible_to(identity)]
        durable = await self.durable.visible_runs(identity)
        mine = [s for s in self.sessions if everything or s.peer.identity.name == identity.name]
        return DaemonInfo(
            server="cc-executor",
            version=VERSION,
            instance=self.instance,
            uptime=round(trio.current_time() - self.started_at, 3),
            connections=len(mine),
            live_runs=len(live),
            runs_started=self.runs.started if everything else self.runs.started_by[identity.name],
            durable_runs=len(durable),
            live_durable_runs=sum(1 for d in durable if d.live),
            draining=self.draining,
            state_dir=self.config.state_dir if everything else None,
        )

    # -- shutdown --------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop taking runs, tell clients, let runs finish for up to ``shutdown_grace``, end
        the rest through the ladder, close sockets."""
        self.draining = True
        grace = self.config.shutdown_grace
        log.info(
            "daemon.draining",
            connections=len(self.sessions),
            live_runs=self.runs.live,
            grace=grace,
            then="live runs are cancelled through the ladder",
        )
        notice = Shutdown("the daemon is shutting down", grace, "live runs are cancelled")
        # A session that joins from here on sees the notice at its start and says it itself
        # (its serve reads it before any checkpoint, in the step it joins in): every session
        # is in this list or after it, none between.
        self.shutdown_notice = notice
        sessions = list(self.sessions)
        # The notices go out while the grace runs: a client that has stopped reading (its
        # notice waits behind a frame it never takes) delays neither the grace nor the others.
        # A notice still unsent when every session has been shut is given up.
        async with trio.open_nursery() as telling:
            for session in sessions:
                telling.start_soon(session.notify_shutdown, notice)
            with trio.move_on_after(grace):
                async with trio.open_nursery() as either:
                    either.start_soon(_then_cancel, self.runs.wait_idle, either.cancel_scope)
                    either.start_soon(_then_cancel, self._hurry.wait, either.cancel_scope)
            # The same rule for the last phase: those that joined during the grace are here,
            # and one that joins from now on closes itself (1001) as soon as it has been told.
            self.closing = True
            sessions = list(self.sessions)
            with trio.move_on_after(self.run_end_bound() + self.config.connect_timeout):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.durable.end_all, "daemon shutdown")
                    for session in sessions:
                        nursery.start_soon(session.shut, "daemon shutdown")
            telling.cancel_scope.cancel()

    def hurry(self) -> None:
        """End the drain's grace now: live runs go through the ladder at once."""
        self._hurry.set()


async def _then_cancel(wait: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()


# The session kind of each WebSocket subprotocol (None: the client offered none we speak).
# The binary one is JSON-RPC with output as binary frames (protocol/binary.py).
SESSION_KINDS: dict[str | None, type[Session] | type[McpSession]] = {
    None: Session,
    SUBPROTOCOL: McpSession,
    BINARY_SUBPROTOCOL: Session,
}
