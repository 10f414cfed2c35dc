"""The connection boundary: one TCP connection, from accept to close, owned in one place.

Theory of operation
-------------------
The listener (listener.py) starts ``ConnectionBoundary.serve`` for every accepted TCP
connection.  Its steps, each owning the errors of its I/O:

1. the peer's address — ``getpeername()`` fails with ENOTCONN when the peer reset before we
   looked;
2. the HTTP request head, bounded in bytes and time (``head_timeout``);
3. a plain GET is a probe (``/healthz`` and ``/readyz`` open, ``/metrics`` behind a token when
   tokens are configured), answered and closed;
4. an upgrade passes the gate (path, token, Origin) and the handshake's checks (upgrade.py);
5. the session kind is picked by the subprotocol chosen (``open_session``, one place), and
   the 101 goes out — with the session's first frame in the same write when its kind speaks
   first (``opening``: the JSON-RPC greeting; MCP waits for the client's ``initialize``).
   Sessions are counted: every kind against the one ``max_connections``.  At the limit the
   client gets the 101 alone, then the session's farewell (JSON-RPC: a -32003 error) and
   close 1013;
6. the session serves, beside the WebSocket's reader, in one nursery; when it ends, the
   WebSocket is closed (bounded by ``close_timeout``), then the socket.

A peer that goes away at any step (a reset, a hang-up, silence past a timeout) is no error:
``connection.lost`` with the stage at info, counted in ``ccx_connections_lost_total{stage}``.
Anything else that escapes a step is a bug, contained here: logged once (``connection.failed``)
with the session id and traceback, counted in ``ccx_internal_errors_total{where="connection"}``,
the client gets the session's farewell (-32603) and close 1011, and nothing reaches the
listener: a handler that raises would end ``trio.serve_listeners`` and the daemon with it.
Cancellation is never caught: it passes through, after the shielded, bounded close.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import attrs
import structlog
import trio

from cc_executor.executor.transport import sockio
from cc_executor.executor.transport.frontdoor import (
    MAX_HEAD_BYTES,
    BadRequest,
    Gate,
    Peer,
    Refusal,
    RequestHead,
    http_response,
    parse_head,
    peer_address,
    read_head,
)
from cc_executor.executor.transport.upgrade import Handshake, server_handshake
from cc_executor.executor.transport.websocket import (
    ConnectionClosed,
    ServerWebSocket,
    WebSocketSettings,
    text_frame,
)
from cc_executor.protocol import InternalError, JsonRpcError, LimitExceeded

log = structlog.get_logger()

CONNECTION_LIMIT = 1013  # RFC 6455 "try again later"
INTERNAL_ERROR = 1011


class ConnectionSession(Protocol):
    """What the boundary needs of a session kind (the JSON-RPC Session, the McpSession)."""

    session_id: str

    async def serve(self) -> None:
        """Handle messages until the connection ends."""

    async def shut(self, reason: str) -> None:
        """The daemon drains: end this session's runs, then close with 1001."""

    def farewell(self, error: JsonRpcError) -> str | None:
        """The frame that tells the client why the boundary closes it, if the kind has one."""

    def opening(self) -> str | None:
        """The kind's first frame, if it speaks first (the JSON-RPC greeting).  The boundary
        asks every session it admits, once, before ``serve``, and writes the frame with the
        101 in the same write; ``serve`` never sends it."""


S = TypeVar("S", bound=ConnectionSession)
SessionOpener = Callable[[ServerWebSocket, Peer], S]
ProbeHandler = Callable[[str], tuple[int, bytes, str] | None]


class ConnectionMetrics(Protocol):
    """The counters the boundary keeps (daemon/metrics.py)."""

    def refused(self, reason: str) -> None: ...

    def internal_error(self, where: str) -> None: ...

    def connection_lost(self, stage: str) -> None: ...


class PeerGone(Exception):
    """The peer went away (reset, hung up, or fell silent) during `stage`."""

    def __init__(self, stage: str, why: str) -> None:
        super().__init__(f"{stage}: {why}")
        self.stage = stage
        self.why = why


@attrs.define
class _Connection:
    """What one connection has reached so far, for its one log line on failure."""

    stream: trio.SocketStream
    stage: str = "accept"
    remote: str | None = None
    ws: ServerWebSocket | None = None
    session: ConnectionSession | None = None


@attrs.frozen(eq=False)
class ConnectionBoundary(Generic[S]):
    """Serves one TCP connection end to end (see the module docstring); never raises."""

    gate: Gate
    probe: ProbeHandler
    open_session: SessionOpener[S]
    sessions: set[S]  # open sessions of every kind: the one count
    max_connections: int
    subprotocols: tuple[str, ...]
    head_timeout: float
    settings: WebSocketSettings
    metrics: ConnectionMetrics
    # Sessions admitted whose 101 is being written: they hold their places in the count until
    # they join `sessions`, so a client is never greeted and then refused.
    _admitting: set[S] = attrs.field(factory=set, init=False)

    async def serve(self, stream: trio.SocketStream) -> None:
        """The handler for each accepted connection."""
        conn = _Connection(stream)
        try:
            await self._serve(conn)
        except* PeerGone as gone:
            lost = gone.exceptions[0]
            assert isinstance(lost, PeerGone)
            log.info("connection.lost", stage=lost.stage, why=lost.why, remote=conn.remote)
            self.metrics.connection_lost(lost.stage)
        except* Exception:
            session_id = conn.session.session_id if conn.session is not None else None
            log.exception(
                "connection.failed", stage=conn.stage, remote=conn.remote, session=session_id
            )
            self.metrics.internal_error("connection")
            with trio.move_on_after(self.settings.close_timeout, shield=True):
                internal = InternalError("internal error; the session is closed", None)
                await self._say_goodbye(conn, internal)
                if conn.ws is not None:
                    await conn.ws.aclose(INTERNAL_ERROR, "internal error")
        finally:
            # A closed socket means the WebSocket's close went all the way (it closes the
            # socket last): nothing is left to do, and no scope is needed to bound it.
            if stream.socket.fileno() != -1:
                with trio.move_on_after(self.settings.close_timeout, shield=True):
                    if conn.ws is not None:
                        await conn.ws.aclose()  # which closes the stream, once
                    if stream.socket.fileno() != -1:
                        await trio.aclose_forcefully(stream)

    async def _serve(self, conn: _Connection) -> None:
        try:
            conn.remote = peer_address(conn.stream)
        except OSError as exc:
            raise PeerGone("accept", exc.strerror or str(exc)) from None
        conn.stage = "head"
        try:
            with trio.fail_after(self.head_timeout):
                raw, rest = await read_head(conn.stream)
            head = parse_head(raw)
        except BadRequest as exc:
            log.info("http.bad_request", error=str(exc), remote=conn.remote)
            await self._reply(conn.stream, http_response(400, b"bad request\n"))
            return
        except trio.TooSlowError:
            raise PeerGone("head", "no request head within head_timeout") from None
        except trio.BrokenResourceError as exc:
            raise PeerGone("head", str(exc.__cause__ or exc)) from None
        if not head.is_websocket:
            conn.stage = "probe"
            await self._serve_probe(conn.stream, head)
            return
        conn.stage = "upgrade"
        verdict = self.gate.authenticate(head)
        if isinstance(verdict, Refusal):
            self.metrics.refused(verdict.rule)
            log.warning(
                "upgrade.refused",
                rule=verdict.rule,
                status=verdict.status,
                path=head.path,
                remote=conn.remote,
            )
            await self._reply(conn.stream, verdict.response())
            return
        handshake = server_handshake(head, self.subprotocols)
        if not isinstance(handshake, Handshake):
            log.info("upgrade.invalid", error=handshake.message, remote=conn.remote)
            body = f"{handshake.message}\n".encode()
            await self._reply(
                conn.stream, http_response(handshake.status, body, headers=handshake.headers)
            )
            return
        ws = ServerWebSocket(
            conn.stream,
            handshake.protocol,
            path=handshake.target,
            subprotocol=handshake.subprotocol,
            settings=self.settings,
            early=rest,  # frames the client sent right behind its head
        )
        session = self.open_session(ws, Peer(verdict, conn.remote))
        # Admitted or refused here, once.  An admitted kind that speaks first has its first
        # frame go out with the 101 (one write, one wake-up of the client); a refused client
        # gets the 101 alone, then the refusal.
        admitted = len(self.sessions) + len(self._admitting) < self.max_connections
        if admitted:
            self._admitting.add(session)
        try:
            first = session.opening() if admitted else None
            await self._switch(conn, handshake, b"" if first is None else text_frame(first))
            # Only now may anything be written on the WebSocket (a farewell, a close).
            conn.ws, conn.session = ws, session
            conn.stage = "session"
            await self._run_session(conn, ws, session, admitted=admitted)
        finally:
            self._admitting.discard(session)

    async def _switch(self, conn: _Connection, handshake: Handshake, first: bytes) -> None:
        """Send the 101, and the session's first frame (if any) in the same write."""
        try:
            with trio.fail_after(self.head_timeout):
                await sockio.send_all(conn.stream, handshake.response + first)
        except trio.TooSlowError:
            raise PeerGone("upgrade", "the 101 could not be sent within head_timeout") from None
        except trio.BrokenResourceError as exc:
            raise PeerGone("upgrade", str(exc.__cause__ or exc)) from None

    async def _run_session(
        self, conn: _Connection, ws: ServerWebSocket, session: S, *, admitted: bool
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.serve_reader)
            if not admitted:
                await self._refuse(conn, ws)
                return
            self._admitting.discard(session)
            self.sessions.add(session)
            try:
                await session.serve()
            finally:
                self.sessions.discard(session)
            # The session is done: closing ends the reader.  (A session that raised is closed
            # with 1011 by ``serve``, after the nursery has cancelled the reader.)
            await ws.aclose()

    async def _refuse(self, conn: _Connection, ws: ServerWebSocket) -> None:
        limit = self.max_connections
        self.metrics.refused("max_connections")
        log.warning("session.refused", reason="max_connections", remote=conn.remote)
        error = LimitExceeded(
            f"connection limit reached (max_connections={limit})",
            {"limit": "max_connections", "value": limit},
        )
        with trio.move_on_after(self.settings.close_timeout, shield=True):
            await self._say_goodbye(conn, error)
            await ws.aclose(CONNECTION_LIMIT, "connection limit reached")

    async def _say_goodbye(self, conn: _Connection, error: JsonRpcError) -> None:
        """Send the session's farewell for `error`, if there is a session and it has one."""
        if conn.ws is None or conn.session is None or conn.ws.closed is not None:
            return
        text = conn.session.farewell(error)
        if text is not None:
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send_message(text)

    async def _serve_probe(self, stream: trio.SocketStream, head: RequestHead) -> None:
        if head.method not in ("GET", "HEAD"):
            await self._reply(stream, http_response(405, b"only GET\n"))
            return
        refusal = self.gate.authorize_probe(head)
        if refusal is not None:
            self.metrics.refused(f"probe_{refusal.rule}")
            await self._reply(stream, refusal.response())
            return
        answer = self.probe(head.path)
        if answer is None:
            await self._reply(stream, http_response(404, f"nothing at {head.path}\n".encode()))
            return
        status, body, content_type = answer
        await self._reply(
            stream, http_response(status, body, content_type, head_only=head.method == "HEAD")
        )

    async def _reply(self, stream: trio.SocketStream, response: bytes) -> None:
        """Send a response and close gently: stop sending, read what the client still sends
        (bounded), then close — closing with unread input would reset the connection and
        could destroy the response before the client reads it.  A peer that is gone is not
        our concern any more."""
        with trio.move_on_after(self.settings.close_timeout):
            try:
                await sockio.send_all(stream, response)
                await stream.send_eof()
                drained = 0
                while drained < MAX_HEAD_BYTES * 8:
                    data = await sockio.receive_some(stream, self.settings.receive_buffer_bytes)
                    if not data:
                        break
                    drained += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await trio.aclose_forcefully(stream)
