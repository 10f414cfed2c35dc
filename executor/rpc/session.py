"""One WebSocket connection, served by one trio nursery.

Theory of operation
-------------------
The nursery holds, for the whole connection, the *reader* (this module's ``_read_loop``), and
for each run three tasks: the *runner* (supervision's ``run_process``: the child, its pipes,
its signals), the *pump* (supervision's ``OutputPump``: framing and sequence numbers, delivering
into this connection's websocket) and the run's *control queue* task, which answers PAUSE,
RESUME, CANCEL, signal and stdin requests for that run one at a time, in the order they came.

Back-pressure is the channels, not code: when the client reads slowly, ``send_message`` in the
pump waits on the socket, the bounded runner->pump channel fills, the runner stops reading the
pipe, the pipe fills, and the child blocks in write().  Nothing is dropped and memory is flat.

The reader never waits on a run: quick requests (execute, status, list) are answered inline,
run-targeted ones go to the run's queue (a full queue back-pressures the client, as it should).
So a CANCEL waiting out its grace period never delays another run's PAUSE.

When the connection goes, every run it started is ended through the cancel ladder before the
nursery closes; if we are cancelled instead (daemon shutdown), each runner's own shielded
``finally`` kills its tree.  No task outlives the nursery, no process outlives its run.

Durable runs are the exception by design: their runners and pumps live in the daemon's nursery
(durable.py).  A session only *attaches* to them (attach.py: one tail task per attached run) and
holds a control queue per durable run it controls; on disconnect those tasks end and the run
goes on.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import structlog
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from cc_executor.executor.runs.attach import Attachment, tail
from cc_executor.executor.runs.durable import DurableRun
from cc_executor.executor.runs.wire import completion_params, state_params
from cc_executor.protocol import (
    JSON,
    Batch,
    ErrorResponse,
    Event,
    Ignored,
    Invalid,
    InvalidParams,
    InvalidState,
    JsonRpcError,
    LimitExceeded,
    NotificationReceived,
    ParseError,
    PolicyRefused,
    RequestReceived,
    Response,
    RunNotFound,
    ServerConnection,
)
from cc_executor.supervision import (
    CompletedEvent,
    InvalidTransition,
    Output,
    OutputPump,
    Run,
    RunEvent,
    SequencedEvent,
    StateEvent,
)

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon
    from cc_executor.executor.transport.frontdoor import Peer

log = structlog.get_logger()

# Requests answered by a run's control queue rather than by the reader.
RUN_METHODS = frozenset({"control", "signal", "stdin"})


async def cancel_quietly(run: Run, reason: str) -> None:
    """End a run through the ladder; one that completed meanwhile is already where we want it."""
    with contextlib.suppress(InvalidTransition):
        await run.cancel(reason)


@attrs.frozen
class Handled:
    """A handler's result, and what must happen once the reply is on the wire."""

    result: dict[str, JSON]
    follow_up: Callable[[], Awaitable[None]] | None = None


@attrs.frozen
class Job:
    """A run-targeted request waiting in its run's control queue."""

    request_id: int | str
    method: str
    params: object


@attrs.define
class RunSlot:
    """A run as its session holds it: the supervision handle, its pump and its control queue."""

    run: Run
    pump: OutputPump
    controls: trio.MemorySendChannel[Job]
    done: bool = False
    # Set once the pump has delivered the run's last event (or discarded it: client gone).
    finished: trio.Event = attrs.field(factory=trio.Event)


class Session:
    """Serves one accepted WebSocket until the client goes or the daemon stops."""

    def __init__(self, daemon: Daemon, ws: WebSocketConnection, peer: Peer) -> None:
        self.daemon = daemon
        self.ws = ws
        self.peer = peer
        self.session_id = secrets.token_hex(6)
        self.conn = ServerConnection()
        self.slots: dict[str, RunSlot] = {}
        # Durable runs this connection controls (their control queues) and follows.
        self.durable_slots: dict[str, RunSlot] = {}
        self.attachments: dict[str, Attachment] = {}
        self.requests = 0
        self.errors = 0
        self._nursery: trio.Nursery | None = None
        self._closed = False

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
        )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self.send_notification("connected", self.daemon.greeting(self))
                    await self._read_loop()
                finally:
                    self._closed = True
                    for attachment in self.attachments.values():
                        attachment.scope.cancel()  # durable runs go on without us
                    with trio.move_on_after(self.daemon.run_end_bound(), shield=True):
                        await self.end_runs("client disconnected")
                    for slot in [*self.slots.values(), *self.durable_slots.values()]:
                        slot.controls.close()
        finally:
            log.info(
                "session.close",
                duration=round(trio.current_time() - started, 3),
                runs=len(self.slots),
                requests=self.requests,
                errors=self.errors,
                close_code=self.ws.closed.code if self.ws.closed else None,
            )

    async def end_runs(self, reason: str) -> None:
        """End every live run through the ladder, concurrently; return once each has sent
        its completion (or discarded it, if the client is gone)."""

        async def end(slot: RunSlot) -> None:
            await cancel_quietly(slot.run, reason)
            await slot.finished.wait()

        async with trio.open_nursery() as nursery:
            for slot in list(self.slots.values()):
                if not slot.done:
                    nursery.start_soon(end, slot)

    async def close(self, code: int, reason: str) -> None:
        """Close the websocket (the reader then ends the session)."""
        with trio.move_on_after(self.daemon.config.connect_timeout, shield=True):
            await self.ws.aclose(code, reason)

    @property
    def closed(self) -> bool:
        """True once the connection is known to be gone."""
        return self._closed

    # -- sending ---------------------------------------------------------------------------

    async def send(self, text: str) -> None:
        """Send a frame; a connection that is already gone is not an error here."""
        try:
            await self.ws.send_message(text)
        except ConnectionClosed:
            self._closed = True

    async def send_notification(self, method: str, params: dict[str, JSON]) -> None:
        await self.send(self.conn.notify(method, params))

    # -- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                return
            if isinstance(message, bytes):
                self.errors += 1
                error = ParseError("binary frames are not accepted: send JSON-RPC 2.0 as text")
                await self.send(self.conn.encode(self.conn.make_error(None, error)))
                continue
            received = self.conn.receive(message)
            if isinstance(received, Batch):
                await self._handle_batch(received.events)
            else:
                await self._handle(received.event)

    async def _handle(self, event: Event) -> None:
        if isinstance(event, Invalid):
            self.errors += 1
            await self.send(self.conn.encode(event.reply))
            return
        if isinstance(event, NotificationReceived | Ignored):
            log.debug("notification.ignored", method=event.method)
            return
        self.requests += 1
        if event.method in RUN_METHODS:
            await self._enqueue(event)
            return
        await self.answer(event.id, lambda: self.daemon.dispatch(self, event.method, event.params))

    async def _enqueue(self, event: RequestReceived) -> None:
        """Hand a run-targeted request to its run's queue (or answer it at once if it can't)."""
        try:
            slot = self.find_slot(getattr(event.params, "run", None))
        except JsonRpcError as exc:
            self.errors += 1
            await self.send(self.conn.respond_error(event.id, exc))
            return
        job = Job(event.id, event.method, event.params)
        if not slot.done:
            try:
                await slot.controls.send(job)
                return
            except trio.ClosedResourceError:
                pass  # completed meanwhile: answer inline below
        await self._run_job(slot, job)

    async def _handle_batch(self, events: tuple[Event, ...]) -> None:
        """Requests in a batch run in order; the array reply goes out when all are done."""
        replies: list[Response | ErrorResponse] = []
        follow_ups: list[Callable[[], Awaitable[None]]] = []
        for event in events:
            if isinstance(event, Invalid):
                self.errors += 1
                replies.append(event.reply)
                continue
            if isinstance(event, NotificationReceived | Ignored):
                continue
            self.requests += 1
            try:
                if event.method in RUN_METHODS:
                    slot = self.find_slot(getattr(event.params, "run", None))
                    handled = await self.daemon.dispatch_run(self, slot, event.method, event.params)
                else:
                    handled = await self.daemon.dispatch(self, event.method, event.params)
            except JsonRpcError as exc:
                self.failed(exc)
                replies.append(self.conn.make_error(event.id, exc))
                continue
            replies.append(self.conn.make_response(event.id, handled.result))
            if handled.follow_up is not None:
                follow_ups.append(handled.follow_up)
        if replies:
            await self.send(self.conn.encode_batch(replies))
        for follow_up in follow_ups:
            await follow_up()

    def failed(self, exc: JsonRpcError) -> None:
        """Count an error reply; refusals by policy or limit also count by their rule."""
        self.errors += 1
        if isinstance(exc, PolicyRefused | LimitExceeded) and isinstance(exc.data, dict):
            reason = exc.data.get("rule") or exc.data.get("limit")
            if isinstance(reason, str):
                self.daemon.metrics.refused(reason)

    async def answer(self, request_id: int | str, call: Callable[[], Awaitable[Handled]]) -> None:
        """Run a handler and send its one reply: the result, or the error it raised."""
        try:
            handled = await call()
        except JsonRpcError as exc:
            self.failed(exc)
            await self.send(self.conn.respond_error(request_id, exc))
            return
        await self.send(self.conn.respond(request_id, handled.result))
        if handled.follow_up is not None:
            await handled.follow_up()

    # -- runs ------------------------------------------------------------------------------

    def find_slot(self, run_id: str | None) -> RunSlot:
        """The run a request names; without a name, this connection's only (or only live) run.

        A durable run can be named from any connection of its owner's identity (or an admin's).
        """
        if run_id is not None:
            slot = self.slots.get(run_id) or self.durable_slots.get(run_id)
            if slot is None:
                slot = self._foreign_slot(run_id) or self._durable_slot(run_id)
            return slot
        if not self.slots:
            raise RunNotFound("no process is running on this connection")
        live = [slot for slot in self.slots.values() if not slot.done]
        if len(live) == 1:
            return live[0]
        if not live and len(self.slots) == 1:
            return next(iter(self.slots.values()))
        raise InvalidParams(
            f"this connection has {len(live) or len(self.slots)} runs: say which with 'run'",
            {"runs": [slot.run.run_id for slot in (live or list(self.slots.values()))]},
        )

    def sees(self, other: Session) -> bool:
        """Whether this client may see and control `other`'s runs: same identity, or admin."""
        identity = self.peer.identity
        return identity.admin or other.peer.identity.name == identity.name

    def _foreign_slot(self, run_id: str) -> RunSlot | None:
        """A run of another connection of this identity, with a control queue of our own so
        that replies come back here."""
        for other in self.daemon.sessions:
            owned = other.slots.get(run_id)
            if other is not self and owned is not None and self.sees(other):
                return self._control_slot(run_id, owned.run, owned.pump)
        return None

    def _control_slot(self, run_id: str, run: Run, pump: OutputPump) -> RunSlot:
        controls_send, controls_receive = trio.open_memory_channel[Job](
            self.daemon.config.control_queue
        )
        slot = RunSlot(run=run, pump=pump, controls=controls_send)
        self.durable_slots[run_id] = slot
        self.nursery.start_soon(self._serve_controls, slot, controls_receive)
        return slot

    def _durable_slot(self, run_id: str) -> RunSlot:
        # Another identity's run does not exist for this client: the same error, word for word.
        durable = self.daemon.durable.visible(run_id, self.peer.identity)
        if durable is None:
            raise RunNotFound(f"no run {run_id!r} on this connection", {"run": run_id})
        if durable.run is None or durable.pump is None:
            raise InvalidState(
                f"run {run_id}: the run has completed (before the daemon restarted)",
                {"run": run_id, "state": "completed"},
            )
        return self._control_slot(run_id, durable.run, durable.pump)

    # -- durable runs ------------------------------------------------------------------------

    def attach(self, durable: DurableRun, from_seq: int) -> None:
        """Follow `durable` from `from_seq` (the reply to attach must already be sent)."""
        attachment = Attachment(durable, from_seq)
        self.attachments[durable.run_id] = attachment
        self.conn.attach_run(durable.run_id, from_seq + 1)
        self.nursery.start_soon(self._tail, attachment)

    async def _tail(self, attachment: Attachment) -> None:
        with structlog.contextvars.bound_contextvars(run=attachment.durable.run_id):
            try:
                await tail(self, attachment)
            finally:
                if self.attachments.get(attachment.durable.run_id) is attachment:
                    del self.attachments[attachment.durable.run_id]

    async def detach(self, run_id: str) -> int | None:
        """Stop following a run; return the last seq sent, or None if it was not followed."""
        attachment = self.attachments.get(run_id)
        if attachment is None:
            return None
        attachment.stop()
        await attachment.done.wait()
        self.conn.detach_run(run_id)
        return attachment.sent_seq

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "session not serving"
        return self._nursery

    @property
    def live_runs(self) -> int:
        return sum(1 for slot in self.slots.values() if not slot.done)

    def add_run(self, run: Run, events: trio.MemoryReceiveChannel[RunEvent]) -> RunSlot:
        """Register a freshly spawned run; its pump starts once the client has the reply."""
        controls_send, controls_receive = trio.open_memory_channel[Job](
            self.daemon.config.control_queue
        )
        pump = OutputPump(
            events, self._deliverer(run), self.daemon.config.supervision, run.unread_bytes
        )
        slot = RunSlot(run=run, pump=pump, controls=controls_send)
        self.slots[run.run_id] = slot
        self._forget_old_runs()
        self.nursery.start_soon(self._serve_controls, slot, controls_receive)
        return slot

    async def start_streaming(self, slot: RunSlot) -> None:
        """Tell the client the run started, then let its output flow."""
        run = slot.run
        await self.send_notification(
            "process.started",
            {
                "run": run.run_id,
                "status": "started",
                "pid": run.pid,
                "pgid": run.pgid,
                "argv": list(run.argv),
            },
        )
        self.nursery.start_soon(self._pump_until_done, slot)

    async def _pump_until_done(self, slot: RunSlot) -> None:
        with structlog.contextvars.bound_contextvars(run=slot.run.run_id):
            try:
                await slot.pump.run()
            finally:
                slot.done = True
                slot.finished.set()
                slot.controls.close()
                self.daemon.run_finished(slot.run, slot.pump.last_seq)

    async def _serve_controls(
        self, slot: RunSlot, controls: trio.MemoryReceiveChannel[Job]
    ) -> None:
        async with controls:
            async for job in controls:
                await self._run_job(slot, job)

    async def _run_job(self, slot: RunSlot, job: Job) -> None:
        await self.answer(
            job.request_id, lambda: self.daemon.dispatch_run(self, slot, job.method, job.params)
        )

    def _deliverer(self, run: Run) -> Callable[[SequencedEvent], Awaitable[None]]:
        conn, ws, run_id = self.conn, self.ws, run.run_id
        max_frame = self.daemon.config.max_frame_bytes

        async def deliver(event: SequencedEvent) -> None:
            # Raises ConnectionClosed when the client is gone: the pump then discards the rest
            # so the runner is never blocked by a dead connection.
            if isinstance(event, Output):
                text = conn.output(run_id, event.seq, event.stream, event.data, max_frame)
            elif isinstance(event, StateEvent):
                method, params = state_params(run, event.state)
                text = conn.run_event(run_id, event.seq, method, params)
            else:
                assert isinstance(event, CompletedEvent)
                params = completion_params(run, event.completed)
                text = conn.run_event(run_id, event.seq, "process.completed", params)
            await ws.send_message(text)

        return deliver

    def _forget_old_runs(self) -> None:
        """Keep at most ``completed_runs_kept`` finished runs for ``status`` and ``list``."""
        finished = [run_id for run_id, slot in self.slots.items() if slot.done]
        for run_id in finished[: max(0, len(finished) - self.daemon.config.completed_runs_kept)]:
            del self.slots[run_id]
