"""One MCP connection (WebSocket subprotocol "mcp"), served by one trio nursery.

Theory of operation
-------------------
The nursery holds the *reader* and, for each non-durable run this connection started, the
run's runner and pump (mcp_runs.py).  Requests that answer at once (initialize, ping,
server/discover, tools/list, tasks/get, tasks/list) are answered by the reader; the others
(tools/call, tasks/result, tasks/cancel) get a task each in the *calls* nursery, so a call
waiting for a long run never holds up a ping or a cancellation.

A tools/call that starts a run waits for the run's end (unless it asked ``wait: false`` or runs
as a task).  Meanwhile, when the request carried ``_meta.progressToken``, a progress reporter
sends ``notifications/progress``: the latest output as ``message``, at most one per
``progress_interval``, and a heartbeat every ``heartbeat_interval`` while the run is quiet.
Before the response goes out the reporter is stopped cooperatively (never in the middle of a
send), and McpConnection refuses any progress after the response anyway.

``notifications/cancelled`` for an in-flight call abandons its request (no answer, no more
progress) and ends its run through the cancel ladder; for a call that has already been
answered it does nothing.

When the connection goes, the calls are cancelled and every non-durable run it started is
ended through the ladder (bounded, shielded) before the nursery closes.  Durable runs and the
tasks they back live in the daemon's nursery and go on.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import attrs
import orjson
import structlog
import trio
from trio_websocket import ConnectionClosed

from cc_executor.executor.mcp.runs import McpRun, read_journal, start_run
from cc_executor.executor.mcp.tasks import McpTask, tasks_of
from cc_executor.executor.rpc.handlers import apply_control, invalid_state
from cc_executor.executor.runs.wire import rung_name
from cc_executor.protocol import (
    JSON,
    ErrorResponse,
    InternalError,
    InvalidParams,
    InvalidState,
    JsonRpcError,
    LimitExceeded,
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
    discover_result,
    initialize_result,
    tool_input_error,
    tool_result,
)
from cc_executor.protocol.mcp_connection import McpConnection
from cc_executor.protocol.mcp_tools import (
    TASK_SUPPORT,
    TOOL_NAMES,
    ControlArgs,
    ListArgs,
    ReadOutputArgs,
    RunTool,
    StatusArgs,
    parse_arguments,
    tool_list,
)
from cc_executor.supervision import InvalidTransition, Run

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon
    from cc_executor.executor.transport.frontdoor import Peer
    from cc_executor.executor.transport.websocket import ServerWebSocket

log = structlog.get_logger()

INSTRUCTIONS = (
    "cc-executor runs commands on its host. `execute` runs one and returns its exit status and "
    "output (progress carries the latest output while it runs); `control` pauses, resumes, "
    "cancels or signals a run; `status`, `list` and `read_output` inspect runs. Long runs: use "
    "task mode, or `durable: true` with `wait: false` and poll `read_output`."
)

# Requests answered by a task of their own (they may wait).
_WAITING = frozenset({"tools/call", "tasks/result", "tasks/cancel"})


class NoAnswer(Exception):
    """The request was cancelled by the client: it gets no response."""


@attrs.define(eq=False)
class Call:
    """An in-flight tools/call waiting for its run."""

    run: McpRun
    cancelled: bool = False


class ProgressReporter:
    """Progress for one waiting call: latest output, rate-limited, heartbeats when quiet."""

    def __init__(self, session: McpSession, request_id: int | str, token: str | int, run: McpRun):
        self._session = session
        self._id = request_id
        self._token = token
        self._run = run
        self._config = session.daemon.config.mcp
        self._started = trio.current_time()
        self._stopping = False
        self._wake: trio.CancelScope | None = None
        self.done = trio.Event()
        self.sent = 0

    async def run(self) -> None:
        try:
            await self._send(f"started run {self._run.run_id}")
            last_sent = trio.current_time()
            seen = self._run.log.last_seq
            while not self.stopped():
                with trio.CancelScope() as wake:
                    self._wake = wake
                    with trio.move_on_at(last_sent + self._config.heartbeat_interval):
                        await self._run.log.wait_changed(seen)
                    await trio.sleep_until(last_sent + self._config.progress_interval)
                self._wake = None
                if self.stopped():
                    break
                log_ = self._run.log
                if log_.last_seq > seen and log_.latest:
                    tail = log_.latest[-self._config.progress_message_bytes :]
                    message = tail.decode("utf-8", errors="replace")
                else:
                    elapsed = trio.current_time() - self._started
                    state = "paused" if log_.paused else self._run.run.state.value
                    message = f"run {self._run.run_id} {state}, {elapsed:.0f} s"
                seen = log_.last_seq
                await self._send(message)
                last_sent = trio.current_time()
        finally:
            self.done.set()

    async def _send(self, message: str) -> None:
        conn = self._session.conn
        if conn.progress_token(self._id) != self._token:
            self._stopping = True  # answered or abandoned: the token is dead
            return
        elapsed = round(trio.current_time() - self._started, 3)
        text = conn.progress(self._token, conn.next_progress(self._token, elapsed), message)
        self.sent += 1
        await self._session.send(text)

    def stopped(self) -> bool:
        """Asked to stop (a method: the flag changes while we wait)."""
        return self._stopping

    async def stop(self) -> None:
        """Stop after the notification being sent, if any; return once stopped."""
        self._stopping = True
        if self._wake is not None:
            self._wake.cancel()
        await self.done.wait()


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
        self._nursery: trio.Nursery | None = None
        self._calls: trio.Nursery | None = None
        self.requests = 0
        self.errors = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        started = trio.current_time()
        structlog.contextvars.bind_contextvars(
            session=self.session_id, identity=self.peer.identity.name
        )
        log.info("session.open", remote=self.peer.address, subprotocol="mcp")
        try:
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

    async def shut(self, reason: str) -> None:
        """The daemon is shutting down: end this session's runs through the ladder, then close."""
        await self._end_runs(reason)
        with trio.move_on_after(self.daemon.config.connect_timeout, shield=True):
            await self.ws.aclose(1001, "server shutting down")

    def farewell(self, error: JsonRpcError) -> None:
        """MCP has no message for a connection the server closes: the close code says it."""
        return None

    async def _end_runs(self, reason: str) -> None:
        async with trio.open_nursery() as nursery:
            for mcp_run in self.runs.values():
                if mcp_run.durable is None and not mcp_run.log.done.is_set():
                    nursery.start_soon(_end_run, mcp_run, reason)

    async def send(self, text: str) -> None:
        """Send a frame; a connection that is already gone is not an error here."""
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send_message(text)

    # -- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._calls is not None
        while True:
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
            request_id = event.params.get("requestId")
            call = self.calls.get(request_id) if isinstance(request_id, int | str) else None
            if call is None:
                return  # answered already, or never ours: nothing to do
            assert isinstance(request_id, int | str)
            call.cancelled = True
            self.conn.abandon(request_id)
            self.nursery.start_soon(_end_run, call.run, "cancelled by the MCP client")
        elif event.method != INITIALIZED:
            log.debug("notification.ignored", method=event.method)

    async def _answer(self, request: McpRequest) -> None:
        """Run the request's handler and send its one answer (none if it was cancelled)."""
        try:
            result = await HANDLERS[request.method](self, request)
        except NoAnswer:
            return
        except JsonRpcError as exc:
            self.errors += 1
            if request.id in self.conn.pending_ids:
                await self.send(self.conn.respond_error(request.id, exc))
            return
        if request.id in self.conn.pending_ids:
            await self.send(self.conn.respond(request.id, result))

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
        for task in tasks_of(self.daemon).visible(self.peer.identity):
            if task.run.run_id == run_id:
                return task.run
        return None

    def live_handle(self, run_id: str) -> Run:
        """The supervision handle of a run this client may control."""
        mcp_run = self.find_run(run_id)
        if mcp_run is not None:
            return mcp_run.run
        durable = self.daemon.durable.visible(run_id, self.peer.identity)
        if durable is None:
            raise RunNotFound(f"no run {run_id!r}", {"run": run_id})
        if durable.run is None:
            raise invalid_state_completed(run_id)
        return durable.run


def invalid_state_completed(run_id: str) -> JsonRpcError:
    return InvalidState(f"run {run_id} has completed", {"run": run_id, "state": "completed"})


async def _end_run(mcp_run: McpRun, reason: str) -> None:
    durable = mcp_run.durable
    if durable is not None:
        durable.journal.unblock()  # a full journal must not hold the ladder up
    with contextlib.suppress(InvalidTransition):
        await mcp_run.run.cancel(reason)
    await mcp_run.log.done.wait()


# -- handlers ----------------------------------------------------------------------------------


def _server_info(session: McpSession) -> dict[str, JSON]:
    return {"name": "cc-executor", "version": str(session.daemon.status()["version"])}


async def initialize(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    result = initialize_result(
        request.params.get("protocolVersion"), _server_info(session), INSTRUCTIONS
    )
    session.conn.initialized_version = str(result["protocolVersion"])
    return result


async def ping(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    return {}


async def discover(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    return discover_result(_server_info(session), INSTRUCTIONS)


async def list_tools(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    result: dict[str, JSON] = {"tools": tool_list(session.version(request))}
    if request.era == "modern":
        result.update({"cacheScope": "private", "ttlMs": 0})  # a cacheable result in 2026
    return result


async def call_tool(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    name = request.params.get("name")
    if not isinstance(name, str) or name not in TOOL_NAMES:
        known: list[JSON] = [*sorted(TOOL_NAMES)]
        raise InvalidParams(f"Unknown tool: {name!r}", {"tools": known})
    version = session.version(request)
    task_asked = request.params.get("task")
    handshake_task = request.era == "handshake" and isinstance(task_asked, dict)
    if handshake_task and TASK_SUPPORT[name] == "forbidden":
        raise InvalidParams(f"tool {name} does not run as a task (execution.taskSupport)")
    parsed = parse_arguments(name, request.params.get("arguments"))
    if isinstance(parsed, list):
        return tool_input_error(parsed, version)
    try:
        if isinstance(parsed, RunTool):
            modern_task = request.wants_tasks_extension and parsed.wait
            if handshake_task or modern_task:
                assert isinstance(task_asked, dict) or modern_task
                ttl = task_asked.get("ttl") if isinstance(task_asked, dict) else None
                return await _start_task(session, request, parsed, ttl)
            return await _run_tool(session, request, parsed, version)
        structured = await _small_tool(session, parsed)
    except JsonRpcError as exc:
        # Failures of the tool itself (policy, limits, no such run) are tool results.
        error: dict[str, JSON] = {"code": exc.error.code, "message": exc.message}
        if exc.data is not None:
            error["data"] = exc.data
        return tool_result(exc.message, {"error": error}, is_error=True, version=version)
    return tool_result(_text(structured), structured, is_error=False, version=version)


def _text(structured: dict[str, JSON]) -> str:
    return orjson.dumps(structured).decode()


async def _start(session: McpSession, parsed: RunTool, durable: bool) -> McpRun:
    live = sum(1 for r in session.runs.values() if r.durable is None and not r.log.done.is_set())
    mcp_run = await start_run(
        session.daemon,
        session.nursery,
        parsed.params,
        durable=durable,
        owner=session.peer.identity.name,
        live_here=live,
    )
    session.runs[mcp_run.run_id] = mcp_run
    return mcp_run


async def _run_tool(
    session: McpSession, request: McpRequest, parsed: RunTool, version: str | None
) -> dict[str, JSON]:
    mcp_run = await _start(session, parsed, parsed.durable)
    if not parsed.wait:
        summary = mcp_run.summary()
        return tool_result(mcp_run.text(), summary, is_error=False, version=version)
    call = Call(mcp_run)
    session.calls[request.id] = call
    try:
        token = session.conn.progress_token(request.id)
        reporter = None if token is None else ProgressReporter(session, request.id, token, mcp_run)
        async with trio.open_nursery() as nursery:
            if reporter is not None:
                nursery.start_soon(reporter.run)
            await mcp_run.log.done.wait()
            if reporter is not None:
                await reporter.stop()
    finally:
        del session.calls[request.id]
    if call.cancelled:
        raise NoAnswer
    return tool_result(
        mcp_run.text(), mcp_run.summary(), is_error=not mcp_run.succeeded, version=version
    )


async def _start_task(
    session: McpSession, request: McpRequest, parsed: RunTool, ttl: object
) -> dict[str, JSON]:
    config = session.daemon.config.mcp
    table = tasks_of(session.daemon)
    if table.full:
        raise LimitExceeded(
            f"too many tasks (max_tasks={config.max_tasks})",
            {"limit": "mcp.max_tasks", "value": config.max_tasks},
        )
    ttl_ms = config.task_ttl_ms
    if isinstance(ttl, int) and not isinstance(ttl, bool) and 0 < ttl < ttl_ms:
        ttl_ms = ttl
    mcp_run = await _start(session, parsed, durable=True)  # a task outlives its client
    task = table.create(mcp_run, ttl_ms, config.task_poll_interval_ms)
    log.info("mcp.task", task_run=mcp_run.run_id, era=request.era)
    if request.era == "modern":
        return {**task.describe_modern(), "resultType": "task"}
    return {"task": task.describe()}


async def _small_tool(
    session: McpSession, args: ControlArgs | StatusArgs | ListArgs | ReadOutputArgs
) -> dict[str, JSON]:
    daemon = session.daemon
    now = trio.current_time()
    match args:
        case ControlArgs():
            return await _control(session, args)
        case StatusArgs(run=None):
            return daemon.status()
        case StatusArgs(run=run_id):
            assert run_id is not None
            mcp_run = session.find_run(run_id)
            if mcp_run is not None:
                return mcp_run.status(now)
            durable = daemon.durable.visible(run_id, session.peer.identity)
            if durable is None:
                raise RunNotFound(f"no run {run_id!r}", {"run": run_id})
            return durable.status(now)
        case ListArgs():
            runs: list[JSON] = [r.status(now) for r in session.runs.values() if r.durable is None]
            runs += [d.status(now) for d in daemon.durable.visible_runs(session.peer.identity)]
            return {"runs": runs}
        case ReadOutputArgs():
            return _read_output(session, args)


def _read_output(session: McpSession, args: ReadOutputArgs) -> dict[str, JSON]:
    config = session.daemon.config.mcp
    limit = min(args.max_bytes or config.read_default_bytes, config.read_max_bytes)
    mcp_run = session.find_run(args.run)
    durable = (
        mcp_run.durable
        if mcp_run is not None
        else session.daemon.durable.visible(args.run, session.peer.identity)
    )
    result: dict[str, JSON] = {"run": args.run}
    if durable is not None:
        events, last = read_journal(durable, args.from_seq, limit)
        last_seq = durable.journal.last_seq
        complete = durable.journal.completed is not None
    elif mcp_run is not None:
        events, last = mcp_run.log.page(args.from_seq, limit)
        last_seq = mcp_run.log.last_seq
        complete = mcp_run.log.completed is not None
        result["first_available_seq"] = mcp_run.log.first_seq
    else:
        raise RunNotFound(f"no run {args.run!r}", {"run": args.run})
    result.update(
        {
            "events": events,
            "next_seq": last,
            "last_seq": last_seq,
            "complete": complete and last >= last_seq,
        }
    )
    return result


async def _control(session: McpSession, args: ControlArgs) -> dict[str, JSON]:
    """Pause, resume, cancel or signal, answering once the effect has happened."""
    run = session.live_handle(args.run)
    match args.action:
        case "signal":
            try:
                run.send_signal(signal.Signals[args.signal_name])
            except InvalidTransition as exc:
                raise invalid_state(run, exc) from None
            return {"run": run.run_id, "status": "signalled", "signal": args.signal_name}
        case "pause" | "resume":
            kind: Literal["PAUSE", "RESUME"] = "PAUSE" if args.action == "pause" else "RESUME"
            await apply_control(session.daemon, run, kind, "")
            return {"run": run.run_id, "status": f"{args.action}d"}
        case _:
            rung = await apply_control(session.daemon, run, "CANCEL", "cancelled by MCP client")
            assert rung is not None
            return {"run": run.run_id, "status": "cancelled", "rung": rung_name(rung)}


# -- tasks -------------------------------------------------------------------------------------


def _task(session: McpSession, request: McpRequest) -> McpTask:
    task = tasks_of(session.daemon).get(request.params.get("taskId"), session.peer.identity)
    if task is None:
        raise InvalidParams("Failed to retrieve task: task not found", {"taskId": None})
    return task


async def get_task(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    task = _task(session, request)
    if request.era == "handshake":
        return task.describe()
    result = task.describe_modern()
    if task.status == "completed":
        result["result"] = task.tool_result(None)
    elif task.status == "failed":
        call_result = task.tool_result(None)
        result["error"] = {
            "code": int(InternalError.code),
            "message": task.status_message() or "failed",
            "data": call_result.get("structuredContent"),
        }
    return result


async def task_result(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    task = _task(session, request)
    await task.run.log.done.wait()
    return task.tool_result(session.version(request))


async def list_tasks(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    return {
        "tasks": [
            task.describe() for task in tasks_of(session.daemon).visible(session.peer.identity)
        ]
    }


async def cancel_task(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    task = _task(session, request)
    if task.terminal:
        raise InvalidParams(
            f"Cannot cancel task: already in terminal status {task.status!r}",
            {"taskId": task.task_id, "status": task.status},
        )
    if request.era == "modern":
        # Cooperative: acknowledge now, end the run through the ladder in the daemon's nursery.
        session.daemon.nursery.start_soon(_end_run, task.run, "task cancelled by MCP client")
        return {}
    await _end_run(task.run, "task cancelled by MCP client")
    return task.describe()


async def update_task(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    task = _task(session, request)
    raise InvalidParams(
        f"task {task.task_id} does not require input",
        {"taskId": task.task_id, "status": task.status},
    )


HANDLERS: dict[str, Callable[[McpSession, McpRequest], Awaitable[dict[str, JSON]]]] = {
    "initialize": initialize,
    "ping": ping,
    "server/discover": discover,
    "tools/list": list_tools,
    "tools/call": call_tool,
    "tasks/get": get_task,
    "tasks/result": task_result,
    "tasks/list": list_tasks,
    "tasks/cancel": cancel_task,
    "tasks/update": update_task,
}
