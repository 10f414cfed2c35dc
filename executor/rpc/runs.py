"""The runs of one JSON-RPC connection: its handles on them, their queues, sink and tails.

Theory of operation
-------------------
A ``RunHandle`` is this connection's hold on one run it may control — one it started, a
durable run, or another connection's run of the same identity (an admin: any run).  Each
handle has two bounded queues, each drained by its own task in the session's nursery:
*controls* (control, signal) and *stdin*.  Requests on one queue are answered one at a time,
in the order they came; the queues are apart so that a write to a child that does not read
never delays a CANCEL (a full queue back-pressures the client's reader, as it should).

``ConnectionSink`` is the sink of a run this connection started: numbered events become
notices (raw output first, then any Claude events parsed from it, all in one write).  The
tails of the durable runs this connection follows are in attachments.py.

A control's reply precedes the event it causes, and never waits behind output.  For a run
whose events come through this connection's own pump, the control's task answers as soon as
the effect holds (PAUSE: every process stopped, before its event is even queued, which may
wait for the pump; CANCEL: the run is over) — ahead of the output the pump still has to send
before the event — and the sink holds back the one event the control
causes (``process.paused``, ``resumed``, ``completed``) until that reply is on the wire.  The
pump never waits for anything else: the reply needs only the socket, and the control has
already queued its event when it returns, so no wait of the pump's can deadlock the run.  If the
sink reaches the caused event before the task has answered (the task was slow to be scheduled),
the sink answers instead, with the result the event proves; whoever claims the reply first sends
it.  The control's task then waits for its event to pass (or for the run to end, or the client
to go), so the next control of the connection starts only once every earlier event has passed:
no event is ever taken for a later control's.  A control that fails is answered by its task with
the error.  For the other runs (a tail from a journal, or no events at all on this connection)
the task answers, and a tail's events of the run wait at the session's gates until it has.
Inside a JSON-RPC batch the array goes out when every element is done, so there a control's
event may precede the array (docs/protocol.md says so).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import attrs
import structlog
import trio
from trio_websocket import ConnectionClosed

from cc_executor.executor.runs.live import LiveRun
from cc_executor.executor.runs.wire import event_notice, rung_name
from cc_executor.protocol import (
    ControlParams,
    InvalidParams,
    InvalidState,
    JsonRpcError,
    RequestReceived,
    RunNotFound,
)
from cc_executor.protocol.claude import ClaudeEvent
from cc_executor.protocol.connection import HoldScope
from cc_executor.protocol.notices import (
    ClaudeNotice,
    RunCompleted,
    RunEvent,
    RunPaused,
    RunResumed,
)
from cc_executor.protocol.results import ControlDone
from cc_executor.supervision import CompletedEvent, SequencedEvent, SinkClosed

if TYPE_CHECKING:
    from cc_executor.executor.rpc.batch import BatchReply, Handled
    from cc_executor.executor.rpc.session import Session

log = structlog.get_logger()


class Gone(SinkClosed):
    """The connection is gone: nothing more can be sent on it (a pump then drops the rest of
    its run's events: supervision's SinkClosed)."""


@attrs.frozen
class Job:
    """A run-targeted request waiting in one of its run's queues."""

    request: RequestReceived
    batch: tuple[BatchReply, int] | None


# The run methods of a handle's controls queue; every other one goes in its stdin queue.
CONTROL_QUEUE = ("control", "signal")
# The event a successful control causes, and the protocol's hold on just that event.
_CAUSES = {"PAUSE": RunPaused, "RESUME": RunResumed, "CANCEL": RunCompleted}
_SCOPES: dict[str, HoldScope] = {"PAUSE": "paused", "RESUME": "resumed", "CANCEL": "completed"}


@attrs.define(eq=False)
class PendingControl:
    """A PAUSE, RESUME or CANCEL in progress on a run whose events this connection pumps."""

    request: RequestReceived
    action: str
    claimed: bool = False  # the control's task or the sink is answering it
    sent: trio.Event = attrs.field(factory=trio.Event)  # its reply is out (or never will be)
    passed: trio.Event = attrs.field(factory=trio.Event)  # the event it caused went out

    def caused(self, notice: RunEvent) -> bool:
        return isinstance(notice, _CAUSES[self.action])


@attrs.define(eq=False)
class RunHandle:
    """This connection's hold on one run: the run and its two request queues."""

    live: LiveRun
    controls: trio.MemorySendChannel[Job]
    stdin: trio.MemorySendChannel[Job]
    pending: PendingControl | None = None
    # The stdin queue's request being answered (a claude.* request holds the session's
    # notices with it: rpc/claude.py).
    answering: Job | None = None

    def close(self) -> None:
        self.controls.close()
        self.stdin.close()


class SessionPart:
    """A part of one session that refers back to it (its handles, its attachments).

    The reference is weak: the session owns the part, and the part is used only while the
    session serves.  So an ended session and everything it holds are freed as soon as its
    last reference goes, not by the cyclic collector's next full pass.
    """

    def __init__(self, session: Session) -> None:
        self._owner = weakref.ref(session)

    @property
    def _session(self) -> Session:
        session = self._owner()
        assert session is not None, "a session's part used after the session was freed"
        return session


class Handles(SessionPart):
    """The runs one connection holds, and the tasks that answer their requests."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self._handles: dict[str, RunHandle] = {}
        self._closed = False

    def adopt(self, live: LiveRun) -> RunHandle:
        """The handle on `live`, made (with its queue tasks) on first use.

        Once the connection has ended (``close_all``; a batch may still be answering) a new
        handle is made closed, with no tasks: its requests are answered inline, as those of
        the handles closed then are, and nothing is left in the nursery to keep the ended
        session open."""
        handle = self._handles.get(live.run_id)
        if handle is not None:
            return handle
        size = self._session.daemon.config.control_queue
        controls_send, controls_receive = trio.open_memory_channel[Job](size)
        stdin_send, stdin_receive = trio.open_memory_channel[Job](size)
        handle = RunHandle(live, controls_send, stdin_send)
        self._handles[live.run_id] = handle
        if self._closed:
            handle.close()
            controls_receive.close()
            stdin_receive.close()
            return handle
        nursery = self._session.nursery
        nursery.start_soon(self._serve, handle, controls_receive)
        nursery.start_soon(self._serve, handle, stdin_receive)
        return handle

    async def find(self, run_id: str | None) -> RunHandle:
        """The run a request names; without a name, this connection's only (or only live) run
        (on the original's profile, with none live, its latest: the original's one process).

        Any run of the caller's identity can be named (an admin's: any run); a run the caller
        may not see does not exist for it, word for word.
        """
        session = self._session
        if run_id is None:
            own = list(session.own.values())
            if not own:
                raise RunNotFound("no run was started on this connection: say which with 'run'")
            live_runs = [live for live in own if not live.done.is_set()]
            if len(live_runs) == 1:
                return self.adopt(live_runs[0])
            if not live_runs and (len(own) == 1 or session.conn.profile.latest_run):
                return self.adopt(own[-1])
            choices = live_runs or own
            raise InvalidParams(
                f"this connection has {len(choices)} runs: say which with 'run'",
                {"runs": [live.run_id for live in choices]},
            )
        daemon = session.daemon
        live = daemon.runs.visible(run_id, session.peer.identity)
        if live is not None:
            return self.adopt(live)
        await session.lookups.loaded()
        durable = await daemon.durable.visible(run_id, session.peer.identity)
        if durable is not None:
            restarted = " (before the daemon restarted)" if durable.run is None else ""
            raise InvalidState(
                f"run {run_id} has completed{restarted}", {"run": run_id, "state": "completed"}
            )
        raise RunNotFound(f"no run {run_id!r}", {"run": run_id})

    async def enqueue(self, request: RequestReceived, batch: tuple[BatchReply, int] | None) -> None:
        """Hand a run-targeted request to its run's queue (or answer it at once if it can't)."""
        session = self._session
        try:
            handle = await self.find(getattr(request.params, "run", None))
        except Gone:  # the client went away while the lookup waited: nobody to answer
            if batch is not None:
                batch[0].settled()
            return
        except JsonRpcError as exc:
            error = exc

            async def refuse() -> Handled:
                raise error

            await session.answer(request.id, refuse, batch)
            return
        job = Job(request, batch)
        # control and signal have their queue; stdin and the claude.* methods share the other
        # (they all write to the CLI's stdin, and none may delay a CANCEL).
        queue = handle.controls if request.method in CONTROL_QUEUE else handle.stdin
        try:
            await queue.send(job)
        except trio.ClosedResourceError:
            await self._run(handle, job)  # the connection is closing: answer inline

    async def _serve(self, handle: RunHandle, jobs: trio.MemoryReceiveChannel[Job]) -> None:
        async with jobs:
            async for job in jobs:
                await self._run(handle, job)

    def get(self, run_id: str) -> RunHandle | None:
        return self._handles.get(run_id)

    async def _run(self, handle: RunHandle, job: Job) -> None:
        from cc_executor.executor.rpc.handlers import RUN_HANDLERS, control

        session = self._session
        request = job.request
        run_id = handle.live.run_id
        if request.method != "control":
            handler = RUN_HANDLERS[request.method]
            if request.method not in CONTROL_QUEUE:  # the stdin queue: one at a time
                handle.answering = job
            try:
                await session.answer(
                    request.id, lambda: handler(session, handle, request.params), job.batch
                )
            finally:
                if handle.answering is job:
                    handle.answering = None
            return
        params = request.params
        assert isinstance(params, ControlParams)
        if job.batch is not None or run_id not in session.own:
            # Its events reach this connection through a tail (or not at all): hold them.
            if job.batch is None:
                session.gates.close(request.id, run_id, "state")
                session.conn.hold(request.id, run_id, "state")
            await session.answer(request.id, lambda: control(session, handle, params), job.batch)
            return
        await self._answered_by_sink(handle, request, params)

    async def _answered_by_sink(
        self, handle: RunHandle, request: RequestReceived, params: ControlParams
    ) -> None:
        """A control of a run this connection pumps: answered as soon as its effect holds,
        its event held back by the sink until then (see the module docstring)."""
        from cc_executor.executor.rpc.handlers import control

        session = self._session
        live = handle.live
        pending = PendingControl(request, params.type)
        handle.pending = pending
        session.conn.hold(request.id, live.run_id, _SCOPES[params.type])
        held = trio.Event()  # a PAUSE or RESUME holds: answer now, not when its event is queued

        async def answer_when_held() -> None:
            await held.wait()
            if not pending.claimed:
                pending.claimed = True
                done = ControlDone("paused" if params.type == "PAUSE" else "resumed", live.run_id)
                await session.send_text(session.conn.respond(request.id, done))
            pending.sent.set()

        try:
            failure: JsonRpcError | None = None
            async with trio.open_nursery() as answering:
                if params.type != "CANCEL":
                    answering.start_soon(answer_when_held)
                try:
                    handled = await control(session, handle, params, held.set)
                except JsonRpcError as exc:
                    failure = exc
                    answering.cancel_scope.cancel()
                else:
                    if params.type == "CANCEL" and not pending.claimed:
                        pending.claimed = True
                        await session.send_text(session.conn.respond(request.id, handled.result))
                    held.set()
            if failure is not None:
                if not pending.claimed:
                    pending.claimed = True
                    session.failed(failure)
                    await session.send_text(session.conn.respond_error(request.id, failure))
                return
            pending.sent.set()
            async with trio.open_nursery() as either:
                for wait in (pending.passed.wait, live.done.wait):
                    either.start_soon(_then_cancel, wait, either.cancel_scope)
        finally:
            pending.sent.set()  # never leave the sink waiting for a reply that will not come
            handle.pending = None

    def close_all(self) -> None:
        self._closed = True
        for handle in self._handles.values():
            handle.close()


class ConnectionSink:
    """The sink of a run started on this connection: its events as notices."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def deliver(
        self, live: LiveRun, event: SequencedEvent, claude: Sequence[ClaudeEvent]
    ) -> None:
        session = self._session
        send = session.send_notice
        run = live.run
        final = isinstance(event, CompletedEvent)
        if final:  # the last line's events precede the completion: nothing follows it
            for typed in claude:
                await send(ClaudeNotice(live.run_id, typed))
        notice = event_notice(live.run_id, run.pid, run.pgid, event, live.completion)
        if isinstance(notice, RunPaused | RunResumed | RunCompleted):
            pending = await self._answer_control(live, notice)
            try:
                await send(notice)
            finally:
                if pending is not None:
                    pending.passed.set()
        elif claude:  # output (only output and the completion complete lines), then its events
            await session.send_notices([notice, *(ClaudeNotice(live.run_id, t) for t in claude)])
        else:
            await send(notice)

    async def _answer_control(self, live: LiveRun, notice: RunEvent) -> PendingControl | None:
        """Make sure the reply to the control in progress that `notice` proves done is out
        before `notice`: wait for its task's, or send it here.  Returns that control."""
        session = self._session
        handle = session.handles.get(live.run_id)
        pending = None if handle is None else handle.pending
        if pending is None or not pending.caused(notice):
            return None
        if pending.claimed:
            await pending.sent.wait()
            return pending
        pending.claimed = True
        request_id = pending.request.id
        try:
            if request_id in session.conn.pending_ids:
                text = session.conn.respond(request_id, _result(pending, live, notice))
                try:
                    with session.backlog.holding(len(text)):
                        await session.ws.send_message(text)
                except ConnectionClosed:
                    raise Gone from None
        finally:
            pending.sent.set()
        return pending

    async def note(self, live: LiveRun, event: ClaudeEvent) -> None:
        if live.completion is None and not self._session.closed:
            with contextlib.suppress(Gone):
                await self._session.send_notice(ClaudeNotice(live.run_id, event))


def _result(pending: PendingControl, live: LiveRun, notice: RunEvent | None) -> ControlDone:
    """The reply to a control that succeeded, as the event it caused proves."""
    match pending.action:
        case "PAUSE":
            return ControlDone("paused", live.run_id)
        case "RESUME":
            return ControlDone("resumed", live.run_id)
    rung = live.run.rung
    completion = notice.completion if isinstance(notice, RunCompleted) else live.completion
    named = completion.rung if completion is not None and completion.rung else None
    return ControlDone("canceled", live.run_id, named or (rung_name(rung) if rung else None))


async def _then_cancel(wait: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
