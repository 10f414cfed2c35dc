"""One cc-executor JSON-RPC connection, served by one trio nursery.

Theory of operation
-------------------
The nursery holds, for the whole connection, the *reader* (``_read_loop``) and:

- the *keeper* of every run this connection starts that is not durable (runs/start.py: its
  runner, pump and watchers); it delivers into this connection through a ``ConnectionSink``;
- for every run this connection controls — its own, a durable one, another connection's of the
  same identity — two queues with a task each (runs.py): *controls* (PAUSE, RESUME, CANCEL,
  signal), answered one at a time in the order they came, and *stdin*, apart, so a write to a
  child that does not read never holds up a CANCEL;
- one *tail* per durable run it follows (runs/attach.py);
- a task per JSON-RPC batch (batch.py), so a batch that waits for a ladder never stops the
  reader.

Back-pressure is the channels, not code: when the client reads slowly, the pump's send waits
on the socket, the bounded runner->pump channel fills, the runner stops reading the pipe, the
pipe fills, and the child blocks in write().  Nothing is dropped and memory is flat.

What the client speaks is fixed at connect: ``profile_for`` reads the upgrade's path and
query (``/ws/mcp`` speaks the original CC-Executor's framing, codes and lenient params unless
``?protocol=current``), and the connection applies it (protocol/profile.py); nothing here
branches on it but the log of params the profile ignored.

A reply precedes the events it causes (gates.py): the request that starts a run holds all of
its events until the reply and ``process.started`` are sent; a control holds the run's state
events until its reply is.  When the connection goes, every run it started that is not
durable is ended through the cancel ladder before the nursery closes; durable runs go on —
and so is one that a batch (or a queued Claude start) starts after the client has gone.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Hashable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING

import attrs
import structlog
import trio
from trio_websocket import ConnectionClosed

from cc_executor.executor.rpc.attachments import Attachments
from cc_executor.executor.rpc.batch import BatchReply, Handled, Handler, serve_batch
from cc_executor.executor.rpc.gates import Gates
from cc_executor.executor.rpc.lookups import Lookups
from cc_executor.executor.rpc.runs import ConnectionSink, Gone, Handles, RunHandle
from cc_executor.executor.runs.control import cancel_quietly, end
from cc_executor.executor.runs.live import LiveRun
from cc_executor.executor.runs.plan import RunPlan
from cc_executor.executor.runs.start import start_run
from cc_executor.executor.transport.backlog import ReplyBacklog
from cc_executor.protocol import (
    Event,
    Id,
    Ignored,
    Invalid,
    InvalidRequest,
    JsonRpcError,
    LimitExceeded,
    NotificationReceived,
    PolicyRefused,
    RequestReceived,
    ServerConnection,
)
from cc_executor.protocol.binary import BINARY_SUBPROTOCOL
from cc_executor.protocol.events import Batch
from cc_executor.protocol.methods import RUN_METHODS  # answered by a run's queues
from cc_executor.protocol.notices import Notice, RunStarted, Shutdown
from cc_executor.protocol.profile import CURRENT, profile_for
from cc_executor.protocol.results import Started

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon
    from cc_executor.executor.transport.frontdoor import Peer
    from cc_executor.executor.transport.websocket import ServerWebSocket

log = structlog.get_logger()


class Session:
    """Serves one accepted WebSocket until the client goes or the daemon stops."""

    def __init__(self, daemon: Daemon, ws: ServerWebSocket, peer: Peer) -> None:
        self.daemon = daemon
        self.ws = ws
        self.peer = peer
        self.session_id = secrets.token_hex(6)
        self._refusal: InvalidRequest | None = None
        self._refusal_reason = "unknown protocol"
        try:
            profile = profile_for(ws.path or "/")
        except InvalidRequest as exc:
            profile, self._refusal = CURRENT, exc
        binary = ws.subprotocol == BINARY_SUBPROTOCOL
        if binary and profile.output_lines:
            self._refusal = InvalidRequest(
                f"{BINARY_SUBPROTOCOL} needs the current protocol: connect to / "
                "(or add ?protocol=current)",
                {"subprotocol": BINARY_SUBPROTOCOL, "protocol": profile.name},
            )
            self._refusal_reason = "binary output needs the current protocol"
            binary = False
        self.conn = ServerConnection(profile, binary_output=binary)
        self.gates = Gates()
        self.handles = Handles(self)
        self.lookups = Lookups(daemon.durable)  # given up when the client goes (lookups.py)
        ws.when_closed(self.lookups.abandon)
        self.attachments = Attachments(self)
        self.own: dict[str, LiveRun] = {}  # runs started here that end with the connection
        self.requests = 0
        self.errors = 0
        self.backlog = ReplyBacklog()
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._waits: set[trio.CancelScope] = set()  # given up when the connection ends

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run the session's nursery until the connection ends; end every run it started."""
        started = trio.current_time()
        structlog.contextvars.bind_contextvars(
            session=self.session_id, identity=self.peer.identity.name
        )
        log.info(
            "session.open",
            remote=self.peer.address,
            path=(self.ws.path or "").split("?", 1)[0],  # the query may hold a token
            subprotocol=self.ws.subprotocol,
            protocol=self.conn.profile.name,
        )
        try:
            if self._refusal is not None:  # the client asked for a protocol we do not speak
                self.errors += 1
                await self.send_text(self.conn.refuse_connection(self._refusal))
                await self.close(1008, self._refusal_reason)
                return
            if await self._joined_the_drain():
                return
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self._read_loop()  # greeted already: the greeting went with the 101
                finally:
                    self._closed = True
                    for wait in self._waits:  # queued starts leave the line: nothing spawns
                        wait.cancel()
                    self.attachments.stop_all()  # durable runs go on without us
                    if any(not live.done.is_set() for live in self.own.values()):
                        with trio.move_on_after(self.daemon.run_end_bound(), shield=True):
                            await self.end_runs("client disconnected")
                    self.handles.close_all()
        finally:
            log.info(
                "session.close",
                duration=round(trio.current_time() - started, 3),
                runs=len(self.own),
                requests=self.requests,
                errors=self.errors,
                close_code=self.ws.closed.code if self.ws.closed else None,
            )

    async def notify_shutdown(self, notice: Shutdown) -> None:
        """The daemon is draining: say so (to a client still there)."""
        with contextlib.suppress(Gone):
            await self.send_notice(notice)

    async def _joined_the_drain(self) -> bool:
        """A session that connects while the daemon drains is told so, as every session was
        when the drain began; once the drain is closing sessions, it is closed at once (1001)
        and True is returned.  Called before the session's first checkpoint (Daemon.shutdown
        relies on it)."""
        notice, closing = self.daemon.shutdown_notice, self.daemon.closing
        if notice is not None:
            await self.notify_shutdown(notice)
        if closing:
            await self.close(1001, "server shutting down")
        return closing

    async def shut(self, reason: str) -> None:
        """End this connection's runs through the ladder, let it see their completions and
        those of the durable runs it follows, then close it (the daemon is shutting down).

        A client that takes none of them within ``close_timeout`` once the processes are gone
        has stopped reading (a stopped process, a dead host): it is closed without them, which
        lets its runs' completions be recorded as the ladder ended them (a sink whose client
        is gone drops the rest), instead of waiting out the drain's last bound.  It is dropped
        without a close frame, which would only wait another ``close_timeout`` behind what it
        never took."""
        ending = [live for live in self.own.values() if live.run.outcome is None]
        if ending:
            async with trio.open_nursery() as nursery:
                for live in ending:
                    nursery.start_soon(cancel_quietly, live.run, reason)
        with trio.move_on_after(self.daemon.config.transport.close_timeout) as waited:
            for live in list(self.own.values()):
                await live.done.wait()
            await self.attachments.wait_completed()
        if waited.cancelled_caught:
            self.ws.abandon("the client took no completion within close_timeout")
        else:
            await self.close(1001, "server shutting down")
        for live in list(self.own.values()):
            await live.done.wait()

    def opening(self) -> str | None:
        """The greeting, for the connection boundary to write with the 101 (one write); none
        for a client refused for its protocol, which gets the refusal first instead."""
        if self._refusal is not None:
            return None
        (frame,) = self.conn.wire_frames(self.daemon.greeting(self.session_id))
        assert isinstance(frame, str)
        return frame

    def farewell(self, error: JsonRpcError) -> str:
        """Why the connection boundary closes us, as a JSON-RPC error (id null)."""
        return self.conn.encode(self.conn.make_error(None, error))

    async def end_runs(self, reason: str) -> None:
        """End every live run started here (not durable) through the ladder, concurrently;
        return once each has sent its completion (or the client is gone)."""
        # A run that has its outcome has nothing to end: it is waited for here, in this task,
        # until its completion has been sent (its keeper is in this session's nursery).
        ending = [live for live in self.own.values() if live.run.outcome is None]
        if ending:
            async with trio.open_nursery() as nursery:
                for live in ending:
                    nursery.start_soon(end, live, reason)
        for live in list(self.own.values()):
            if not live.done.is_set():
                await live.done.wait()

    async def close(self, code: int, reason: str) -> None:
        """Close the websocket (the reader then ends the session)."""
        with trio.move_on_after(self.daemon.config.connect_timeout, shield=True):
            await self.ws.aclose(code, reason)

    @contextlib.contextmanager
    def while_connected(self) -> Iterator[trio.CancelScope]:
        """A scope cancelled when the connection ends (at once if it has): for a wait on the
        client's behalf that must not outlive it — a queued start's turn (rpc/handlers.py)."""
        scope = trio.CancelScope()
        if self._closed:
            scope.cancel()
        self._waits.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._waits.discard(scope)

    @property
    def closed(self) -> bool:
        """True once the connection is known to be gone."""
        return self._closed

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "session not serving"
        return self._nursery

    # -- sending ---------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send a frame (a reply: counted in the reply backlog while it waits for the socket);
        a connection that is already gone is not an error here."""
        try:
            with self.backlog.holding(len(text)):
                await self.ws.send_message(text)
        except ConnectionClosed:
            self._closed = True

    async def send_notice(self, notice: Notice, *, gated: bool = True) -> None:
        """Send a notification once its gates are open (`gated` False: it is part of a reply,
        sent by the request's own follow-up).

        Raises:
            Gone: the client is gone (a pump then drops the rest of its run's events).
        """
        await self.send_notices((notice,), gated=gated)

    async def send_notices(self, notices: Sequence[Notice], *, gated: bool = True) -> None:
        """`send_notice` of several notices, every frame of them in one write: the original's
        lines of one chunk, a Claude line's output and its typed events."""
        if gated:
            for notice in notices:
                await self.gates.wait(notice)
        limit = self.daemon.config.max_frame_bytes
        frames = [frame for notice in notices for frame in self.conn.wire_frames(notice, limit)]
        try:
            await self.ws.send_frames(frames)
        except ConnectionClosed:
            self._closed = True
            raise Gone from None

    # -- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            await self.backlog.wait_room()  # a client that sends and never reads (backlog.py)
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                return
            if isinstance(message, bytes):
                self.errors += 1
                await self.send_text(self.conn.refuse_binary())
                continue
            received = self.conn.receive(message)
            if isinstance(received, Batch):
                self.nursery.start_soon(serve_batch, self, received.events)
            else:
                await self._handle(received.event)

    async def _handle(self, event: Event) -> None:
        if isinstance(event, Invalid):
            self.errors += 1
            await self.send_text(self.conn.encode(event.reply))
            return
        if isinstance(event, NotificationReceived | Ignored):
            log.debug("notification.ignored", method=event.method)
            return
        self.requests += 1
        self.note_ignored(event)
        if event.method in RUN_METHODS:
            await self.handles.enqueue(event, None)
            return
        await self.answer(event.id, self.handler_for(event), None)

    def note_ignored(self, event: RequestReceived) -> None:
        """Log the params the profile left out (the original ignored them too)."""
        if event.ignored:
            log.info("request.params_ignored", method=event.method, params=list(event.ignored))

    def handler_for(self, event: RequestReceived) -> Handler:
        from cc_executor.executor.rpc.handlers import SESSION_HANDLERS

        handler = SESSION_HANDLERS[event.method]
        return lambda: handler(self, event.id, event.params)

    # -- answering ---------------------------------------------------------------------------

    def failed(self, exc: JsonRpcError) -> None:
        """Count an error reply; refusals by policy or limit also count by their rule."""
        self.errors += 1
        if isinstance(exc, PolicyRefused | LimitExceeded) and isinstance(exc.data, dict):
            reason = exc.data.get("rule") or exc.data.get("limit")
            if isinstance(reason, str):
                self.daemon.metrics.refused(reason)

    async def answer(
        self, request_id: Id, call: Handler, batch: tuple[BatchReply, int] | None
    ) -> None:
        """Run a handler and give its one reply: on the wire, or into its batch."""
        handled: Handled | JsonRpcError
        try:
            handled = await call()
        except JsonRpcError as exc:
            self.failed(exc)
            handled = exc
        except Gone:  # the client went away while its lookup waited: nobody to answer
            if batch is not None:
                batch[0].settled()
            return
        if batch is not None:
            replies, index = batch
            if isinstance(handled, JsonRpcError):
                replies.replies[index] = self.conn.make_error(request_id, handled)
            else:
                replies.replies[index] = self.conn.make_response(request_id, handled.result)
                if handled.notice is not None:  # after the batch's array, on its own
                    replies.follow_ups.append(partial(self._send_after_reply, handled.notice))
                if handled.follow_up is not None:
                    replies.follow_ups.append(handled.follow_up)
            replies.settled()
            return
        if isinstance(handled, JsonRpcError):
            await self.send_text(self.conn.respond_error(request_id, handled))
        else:
            await self._send_reply(request_id, handled)
            if handled.follow_up is not None:
                await handled.follow_up()
        self.gates.open(request_id)

    async def _send_reply(self, request_id: Id, handled: Handled) -> None:
        """The reply, and the notice that follows it in the same write (one syscall and one
        wake-up of the client, not two); a client that is gone is not an error here."""
        reply = self.conn.respond(request_id, handled.result)
        if handled.notice is None:
            await self.send_text(reply)
            return
        frames = [reply, *self.conn.wire_frames(handled.notice, self.daemon.config.max_frame_bytes)]
        try:
            await self.ws.send_frames(frames)
        except ConnectionClosed:
            self._closed = True

    async def _send_after_reply(self, notice: Notice) -> None:
        with contextlib.suppress(Gone):
            await self.send_notice(notice, gated=False)

    # -- runs ------------------------------------------------------------------------------

    def hold(self, key: Hashable, run_id: str) -> None:
        """Every event of `run_id` waits until `key`'s reply (and follow-up) is sent."""
        self.gates.close(key, run_id, "all")
        if not isinstance(key, GateKey):
            assert isinstance(key, int | str)
            self.conn.hold(key, run_id, "all")

    async def start(self, request_id: Id, plan: RunPlan) -> Handled:
        """Start `plan` for this connection; its events follow the reply and
        ``process.started`` (a durable run's through an attachment from seq 0)."""
        self.hold(request_id, plan.run_id)
        live = await self.launch(plan)
        run = live.run
        started = Started(run.run_id, run.pid, run.pgid, plan.durable, plan.session)
        notice = RunStarted(run.run_id, run.pid, run.pgid, run.argv, plan.durable)
        durable = live.durable
        if durable is None:
            return Handled(started, None, notice)

        async def follow_up() -> None:
            if not self._closed:  # followed only by a client that got its process.started
                self.attachments.attach(durable, 0)

        return Handled(started, follow_up, notice)

    async def launch(self, plan: RunPlan) -> LiveRun:
        """Start `plan` (its events held by the caller's gate until it is announced)."""
        if self.conn.binary_output and not plan.durable:
            # Its frames wait for the socket unencoded: bigger reads in the same memory.
            reads = attrs.evolve(
                plan.supervision, read_size=self.daemon.config.binary_stream_buffer
            )
            plan = attrs.evolve(plan, supervision=reads)
        sink = None if plan.durable else ConnectionSink(self)
        live = await start_run(
            self.daemon,
            plan,
            self.peer.identity,
            nursery=self.nursery,
            origin=self.session_id,
            sink=sink,
        )
        if not plan.durable:
            self.own[live.run_id] = live
            self._forget_old_runs()
            if self._closed:
                # The client went while this run was starting (a batch's, served by a task
                # of its own; a Claude start queued for its session): the connection's end
                # has passed it by, and nobody will ever see it.  It ends as the others did.
                self.nursery.start_soon(end, live, "client disconnected")
        return live  # its handle (two queues and their tasks) is made by its first control

    async def announce(self, live: LiveRun) -> None:
        """``process.started``; a durable run is then followed from its first event."""
        run = live.run
        durable = live.durable is not None
        try:
            started = RunStarted(run.run_id, run.pid, run.pgid, run.argv, durable)
            await self.send_notice(started, gated=False)
        except Gone:
            return
        if live.durable is not None:
            self.attachments.attach(live.durable, 0)

    async def find(self, run_id: str | None) -> RunHandle:
        """The run a request names (see Handles.find)."""
        return await self.handles.find(run_id)

    def _forget_old_runs(self) -> None:
        """Keep at most ``completed_runs_kept`` finished runs of this connection."""
        finished = [run_id for run_id, live in self.own.items() if live.done.is_set()]
        for run_id in finished[: max(0, len(finished) - self.daemon.config.completed_runs_kept)]:
            del self.own[run_id]


@attrs.frozen
class GateKey:
    """A gate held by the daemon itself rather than by a request (a queued Claude start)."""

    run: str
