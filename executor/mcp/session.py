"""One MCP connection (WebSocket subprotocol "mcp"), served by one trio nursery.

Theory of operation
-------------------
The nursery holds the *reader* and, for each non-durable run this connection started, the
run's keeper (runs/start.py, through runs.py).  Requests that answer at once (initialize, ping,
server/discover, tools/list, tasks/get, tasks/list) are answered by the reader; the others
(tools/call, tasks/result, tasks/cancel) get a task each in the *calls* nursery, so a call
waiting for a long run never holds up a ping or a cancellation.

A tools/call that starts a run waits for the run's end (unless it asked ``wait: false`` or runs
as a task), with progress while it waits (progress.py).  The handlers are in handlers.py.

``notifications/cancelled`` for an in-flight call abandons its request (no answer, no more
progress) and ends its run through the cancel ladder; for a call that has already been
answered it does nothing.  A cancellation can overtake its call: the client sends it while the
call's task is still starting the run (or has not run at all).  Such a request is remembered
in ``cancel_asked`` and keeps its id until its handler gets there: the handler ends the run it
started (`started`) or that it would wait for (`follow`), and a request that got no further
than that is not answered (`_answer`).  A cancelled ``tasks/result`` only waits: it stops
waiting at once (the task goes on; tasks/cancel is what ends it).

When the connection goes, the calls are cancelled and every non-durable run it started is
ended through the ladder (bounded, shielded) before the nursery closes.  Durable runs and the
tasks they back live in the daemon's nursery and go on.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import attrs
import orjson
import structlog
import trio
from trio_websocket import ConnectionClosed

from cc_executor.executor.mcp.runs import McpRun
from cc_executor.executor.runs import control
from cc_executor.executor.runs.live import LiveRun
from cc_executor.executor.transport.backlog import ReplyBacklog
from cc_executor.protocol import (
    JSON,
    ErrorResponse,
    InvalidState,
    JsonRpcError,
    ParseError,
    RunNotFound,
)
from cc_executor.protocol.mcp import (
    CANCELLED,
    INITIALIZED,
    LATEST_HANDSHAKE,
    McpIgnored,
    McpInvalid,
    McpNotification,
    McpRequest,
    readable_id,
    tool_result,
)
from cc_executor.protocol.mcp_connection import McpConnection
from cc_executor.protocol.notices import Shutdown

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon
    from cc_executor.executor.transport.frontdoor import Peer
    from cc_executor.executor.transport.websocket import ServerWebSocket

log = structlog.get_logger()

# Requests answered by a task of their own (they may wait).
_WAITING = frozenset({"tools/call", "tasks/result", "tasks/cancel"})
# Requests that only wait: a cancellation stops them where they are.
_ONLY_WAITING = frozenset({"tasks/result"})


# What a JSON-RPC answer adds around its result: {"jsonrpc":"2.0","id":…,"result":…}, with room
# for a long id.
ANSWER_ENVELOPE = 1024


def most_that_fit(count: int, fits: Callable[[int], bool]) -> int:
    """The largest n in 1..`count` with `fits(n)` (at least 1: one item always goes), for
    answers that must fit one frame; `fits` is monotonic (fewer items, a smaller answer)."""
    if fits(count):
        return count
    good, bad = 1, count
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good


class NoAnswer(Exception):
    """The request was cancelled by the client: it gets no response."""


@attrs.define(eq=False)
class Call:
    """An in-flight tools/call waiting for its run (or for a turn of a Claude session:
    `interrupt`, then, is what a cancel does instead of ending the run)."""

    run: McpRun
    cancelled: bool = False
    interrupt: Callable[[], Awaitable[None]] | None = None


class McpSession:
    """Serves one accepted WebSocket that chose the "mcp" subprotocol."""

    def __init__(self, daemon: Daemon, ws: ServerWebSocket, peer: Peer) -> None:
        self.daemon = daemon
        self.ws = ws
        self.peer = peer
        self.session_id = secrets.token_hex(6)
        self.conn = McpConnection()
        self.runs: dict[str, McpRun] = {}
        self.calls: dict[int | str, Call] = {}
        self.cancel_asked: set[int | str] = set()  # cancelled before their handler waited
        self._waits: dict[int | str, trio.CancelScope] = {}  # _ONLY_WAITING requests in flight
        self._nursery: trio.Nursery | None = None
        self._calls: trio.Nursery | None = None
        self.requests = 0
        self.errors = 0
        self.backlog = ReplyBacklog()

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        started = trio.current_time()
        structlog.contextvars.bind_contextvars(
            session=self.session_id, identity=self.peer.identity.name
        )
        log.info("session.open", remote=self.peer.address, subprotocol="mcp")
        try:
            if self.daemon.closing:  # connected while the drain closes sessions (shutdown())
                with trio.move_on_after(self.daemon.config.connect_timeout, shield=True):
                    await self.ws.aclose(1001, "server shutting down")
                return
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    async with trio.open_nursery() as calls:
                        self._calls = calls
                        await self._read_loop()
                        calls.cancel_scope.cancel()
                finally:
                    with trio.move_on_after(self.daemon.run_end_bound(), shield=True):
                        await self._end_runs("client disconnected")
        finally:
            log.info(
                "session.close",
                duration=round(trio.current_time() - started, 3),
                runs=len(self.runs),
                requests=self.requests,
                errors=self.errors,
                mcp=True,
            )

    async def notify_shutdown(self, notice: Shutdown) -> None:
        """MCP has no shutdown notification: its calls learn of the drain from their runs."""

    def opening(self) -> None:
        """An MCP server speaks only when spoken to: the client's initialize comes first."""

    def farewell(self, error: JsonRpcError) -> None:
        """MCP has no message for a connection the server closes: the close code says it."""
        return None

    async def shut(self, reason: str) -> None:
        """The daemon is shutting down: end this session's runs through the ladder, then close."""
        await self._end_runs(reason)
        with trio.move_on_after(self.daemon.config.connect_timeout, shield=True):
            await self.ws.aclose(1001, "server shutting down")

    async def _end_runs(self, reason: str) -> None:
        async with trio.open_nursery() as nursery:
            for mcp_run in self.runs.values():
                if mcp_run.durable is None and not mcp_run.log.done.is_set():
                    nursery.start_soon(control.end, mcp_run.live, reason)

    async def send(self, text: str) -> None:
        """Send a frame (counted in the reply backlog while it waits for the socket); a
        connection that is already gone is not an error here."""
        with contextlib.suppress(ConnectionClosed), self.backlog.holding(len(text)):
            await self.ws.send_message(text)

    # -- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._calls is not None
        while True:
            await self.backlog.wait_room()  # a client that calls and never reads (backlog.py)
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                return
            if isinstance(message, bytes):
                self.errors += 1
                binary = ParseError("binary frames are not accepted: send JSON text")
                error = McpInvalid(ErrorResponse(None, binary.error))
                await self.send(self.conn.encode_invalid(error))
                continue
            event = self.conn.receive(message)
            if isinstance(event, McpInvalid):
                self.errors += 1
                await self.send(self.conn.encode_invalid(event))
            elif isinstance(event, McpIgnored):
                continue
            elif isinstance(event, McpNotification):
                self._notification(event)
            else:
                self.requests += 1
                if event.method in _WAITING:
                    self._calls.start_soon(self._answer, event)
                else:
                    await self._answer(event)

    def _notification(self, event: McpNotification) -> None:
        if event.method == CANCELLED:
            request_id = readable_id(event.params.get("requestId"))  # never a bool: true is not 1
            if request_id is None:
                return
            call = self.calls.get(request_id)
            if call is not None:
                if not call.cancelled:  # once: a repeated cancel is not another interrupt
                    self._cancel(request_id, call)
            elif request_id in self.conn.pending_ids:
                self.cancel_asked.add(request_id)  # its handler has not got to waiting yet
                wait = self._waits.get(request_id)
                if wait is not None:
                    wait.cancel()
            # else: answered already, or never ours: nothing to do
        elif event.method != INITIALIZED:
            log.debug("notification.ignored", method=event.method)

    def _cancel(self, request_id: int | str, call: Call) -> None:
        """The client cancelled a waiting call: no answer, and its run ends (or its turn)."""
        call.cancelled = True
        self.cancel_asked.discard(request_id)
        self.conn.abandon(request_id)
        if call.interrupt is not None:
            # It may wait for the turn that takes its message (turnwait.py): the daemon's, so
            # that the interrupt outlives this connection, as a durable session does.
            self.daemon.start_owned("mcp", call.interrupt)
        else:
            self.nursery.start_soon(control.end, call.run.live, "cancelled by the MCP client")

    def started(self, request_id: int | str, mcp_run: McpRun) -> None:
        """The request has started `mcp_run`: if the client cancelled it meanwhile, the run ends.

        Raises:
            NoAnswer: the request was cancelled.
        """
        if request_id in self.cancel_asked:
            self._cancel(request_id, Call(mcp_run))
            raise NoAnswer

    def follow(self, request_id: int | str, call: Call) -> None:
        """The request waits for `call` now (until `unfollow`); a cancel already asked acts."""
        self.calls[request_id] = call
        if request_id in self.cancel_asked:
            self._cancel(request_id, call)

    def unfollow(self, request_id: int | str) -> None:
        del self.calls[request_id]

    async def _answer(self, request: McpRequest) -> None:
        """Run the request's handler and send its one answer (none if it was cancelled)."""
        from cc_executor.executor.mcp import handlers

        scope = trio.CancelScope()
        if request.method in _ONLY_WAITING:
            self._waits[request.id] = scope
        try:
            with scope:
                result = await handlers.HANDLERS[request.method](self, request)
        except NoAnswer:
            return
        except JsonRpcError as exc:
            self.errors += 1
            if not self._withheld(request.id):
                await self.send(self.conn.respond_error(request.id, exc))
            return
        finally:
            self._waits.pop(request.id, None)
        if scope.cancelled_caught:  # the client cancelled the wait
            self._withheld(request.id)
            return
        if not self._withheld(request.id):
            await self.send(self.conn.respond(request.id, result))

    def _withheld(self, request_id: int | str) -> bool:
        """True when the request gets no answer: abandoned, or cancelled before it waited."""
        if request_id in self.cancel_asked:
            self.cancel_asked.discard(request_id)
            self.conn.abandon(request_id)
            return True
        return request_id not in self.conn.pending_ids

    @property
    def answer_room(self) -> int:
        """How large a result may be as JSON: its answer must fit `max_frame_bytes`, what a
        client's WebSocket takes (the official Python SDK's: at most 1 MiB)."""
        return self.daemon.config.max_frame_bytes - ANSWER_ENVELOPE

    def fits_a_frame(self, structured: Mapping[str, JSON], version: str | None) -> bool:
        """Whether the tool result carrying `structured` (twice: as text too) fits a frame."""
        text = orjson.dumps(structured).decode()
        result = tool_result(text, structured, is_error=False, version=version)
        return len(orjson.dumps(result)) <= self.answer_room

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "session not serving"
        return self._nursery

    def version(self, request: McpRequest) -> str | None:
        """The protocol version a request is answered in (None: modern)."""
        if request.era == "modern":
            return None
        return self.conn.initialized_version or LATEST_HANDSHAKE

    # -- runs ------------------------------------------------------------------------------

    def find_run(self, run_id: str) -> McpRun | None:
        mcp_run = self.runs.get(run_id)
        if mcp_run is not None:
            return mcp_run
        for task in self.daemon.tasks.visible(self.peer.identity):
            if task.run.run_id == run_id:
                return task.run
        return None

    async def live_handle(self, run_id: str) -> LiveRun:
        """A run this client may control: its own, a task's, or any visible live run."""
        mcp_run = self.find_run(run_id)
        if mcp_run is not None:
            return mcp_run.live
        live = self.daemon.runs.visible(run_id, self.peer.identity)
        if live is not None:
            return live
        if await self.daemon.durable.visible(run_id, self.peer.identity) is not None:
            raise InvalidState(f"run {run_id} has completed", {"run": run_id, "state": "completed"})
        raise RunNotFound(f"no run {run_id!r}", {"run": run_id})
