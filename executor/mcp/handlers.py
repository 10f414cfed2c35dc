"""The MCP methods and tools: one handler per method, one per tool.

Handlers raise the protocol's errors; the session sends one answer per request (none for a
request the client cancelled).  Tools that start runs go through the one start path
(runs.py → runs/start.py); control goes through runs/control.py, as on JSON-RPC.  A failure of a
tool itself (policy, limits, no such run) is a tool result with ``isError``, not a JSON-RPC
error, as MCP asks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, NoReturn

import orjson
import structlog
import trio

from cc_executor.executor import VERSION
from cc_executor.executor.mcp.progress import ProgressReporter
from cc_executor.executor.mcp.runlog import Page, read_journal, shorten_argv
from cc_executor.executor.mcp.runs import McpRun, start_mcp_run
from cc_executor.executor.mcp.session import Call, McpSession, NoAnswer, most_that_fit
from cc_executor.executor.mcp.sessions import session_tool
from cc_executor.executor.mcp.tasks import McpTask
from cc_executor.executor.runs import control
from cc_executor.executor.runs.durable import DurableRun
from cc_executor.executor.runs.wire import rung_name
from cc_executor.protocol import (
    JSON,
    InternalError,
    InvalidParams,
    JsonRpcError,
    RunNotFound,
)
from cc_executor.protocol.mcp import (
    McpRequest,
    discover_result,
    initialize_result,
    tool_input_error,
    tool_result,
)
from cc_executor.protocol.mcp_session_tools import SESSION_TOOL_ARGS
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
from cc_executor.protocol.results import RunInfo, RunList
from cc_executor.protocol.server_codec import result_object, run_info_object

log = structlog.get_logger()

INSTRUCTIONS = (
    "cc-executor runs commands on its host. `execute` runs one and returns its exit status and "
    "output (progress carries the latest output while it runs); `claude` runs Claude Code; "
    "`claude_start` starts a live Claude session that `claude_send`, `claude_interrupt`, "
    "`claude_permission` steer and `claude_session` reads; "
    "`control` pauses, resumes, cancels or signals a run; `status`, `list` and `read_output` "
    "inspect runs. Long runs: use task mode, or `durable: true` with `wait: false` and poll "
    "`read_output`."
)


def _server_info(session: McpSession) -> dict[str, JSON]:
    return {"name": "cc-executor", "version": VERSION}


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
        if isinstance(parsed, SESSION_TOOL_ARGS):
            return await session_tool(session, request, parsed, version)
        if isinstance(parsed, RunTool):
            modern_task = request.wants_tasks_extension and parsed.wait
            if handshake_task or modern_task:
                assert isinstance(task_asked, dict) or modern_task
                ttl = task_asked.get("ttl") if isinstance(task_asked, dict) else None
                return await _start_task(session, request, parsed, ttl)
            return await _run_tool(session, request, parsed, version)
        structured = await _small_tool(session, parsed, version)
        if not session.fits_a_frame(structured, version):
            shorten_argv(structured)  # a status of a run of long arguments
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
    mcp_run = await start_mcp_run(
        session.daemon,
        session.nursery,
        parsed.params,
        durable=durable,
        owner=session.peer.identity,
        origin=session.session_id,
    )
    session.runs[mcp_run.run_id] = mcp_run
    return mcp_run


async def _run_tool(
    session: McpSession, request: McpRequest, parsed: RunTool, version: str | None
) -> dict[str, JSON]:
    mcp_run = await _start(session, parsed, parsed.durable)
    session.started(request.id, mcp_run)
    if not parsed.wait:
        summary = mcp_run.summary()
        if not session.fits_a_frame(summary, version):
            shorten_argv(summary)
        return tool_result(mcp_run.text(), summary, is_error=False, version=version)
    call = Call(mcp_run)
    session.follow(request.id, call)
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
        session.unfollow(request.id)
    if call.cancelled:
        raise NoAnswer
    return mcp_run.result(version, session.answer_room)


async def _start_task(
    session: McpSession, request: McpRequest, parsed: RunTool, ttl: object
) -> dict[str, JSON]:
    config = session.daemon.config.mcp
    table = session.daemon.tasks
    with table.admitting(config, ttl) as ttl_ms:
        mcp_run = await _start(session, parsed, durable=True)  # a task outlives its client
        session.started(request.id, mcp_run)
        task = table.create(mcp_run, ttl_ms, config.task_poll_interval_ms)
    log.info("mcp.task", task_run=mcp_run.run_id, era=request.era)
    if request.era == "modern":
        return {**task.describe_modern(), "resultType": "task"}
    return {"task": task.describe()}


async def _small_tool(
    session: McpSession,
    args: ControlArgs | StatusArgs | ListArgs | ReadOutputArgs,
    version: str | None,
) -> dict[str, JSON]:
    daemon = session.daemon
    identity = session.peer.identity
    now = trio.current_time()
    match args:
        case ControlArgs():
            return await _control(session, args)
        case StatusArgs(run=None):
            return result_object(await daemon.status(identity))
        case StatusArgs(run=run_id):
            assert run_id is not None
            mcp_run = session.find_run(run_id)
            if mcp_run is not None:
                return mcp_run.status(now)
            live = daemon.runs.visible(run_id, identity)
            if live is not None:
                return run_info_object(live.info(now, session.session_id))
            durable = await daemon.durable.visible(run_id, identity)
            if durable is None:
                raise RunNotFound(f"no run {run_id!r}", {"run": run_id})
            return run_info_object(durable.info(now))
        case ListArgs():
            listed = {
                live.run_id: live.info(now, session.session_id)
                for live in daemon.runs.visible_runs(identity)
            }
            for durable in await daemon.durable.visible_runs(identity):
                listed.setdefault(durable.run_id, durable.info(now))
            ordered = sorted(listed.values(), key=lambda info: info.started or 0.0)
            return _fitted_list(session, ordered, version)
        case ReadOutputArgs():
            return await _read_output(session, args, version)


def _fitted_list(
    session: McpSession, ordered: list[RunInfo], version: str | None
) -> dict[str, JSON]:
    """`list`'s result, oldest first; when it would not fit one frame, the newest runs that
    do, with `omitted`: how many older ones were left out (`status {run}` still has each)."""

    def newest(count: int) -> dict[str, JSON]:
        return result_object(RunList(tuple(ordered[len(ordered) - count :])))

    kept = most_that_fit(len(ordered), lambda n: session.fits_a_frame(newest(n), version))
    listed = newest(kept)
    if kept < len(ordered):
        listed["omitted"] = len(ordered) - kept
    if not session.fits_a_frame(listed, version):  # one run of long arguments
        for run in listed["runs"] if isinstance(listed["runs"], list) else []:
            if isinstance(run, dict):
                shorten_argv(run)
    return listed


async def _read_output(
    session: McpSession, args: ReadOutputArgs, version: str | None
) -> dict[str, JSON]:
    """A page of the run's events; smaller than asked for when the answer would not fit one
    frame (halved until it does; one event alone goes as base64 if its text does not fit)."""
    config = session.daemon.config.mcp
    limit = min(args.max_bytes or config.read_default_bytes, config.read_max_bytes)
    mcp_run = session.find_run(args.run)
    durable = (
        mcp_run.durable
        if mcp_run is not None
        else await session.daemon.durable.visible(args.run, session.peer.identity)
    )
    if durable is None and mcp_run is None:
        _refuse_read(session, args.run)
    room, binary = session.daemon.config.max_frame_bytes, False
    while True:
        page = Page(limit, room, binary=binary)
        result = _read_page(page, args, mcp_run, durable)
        if session.fits_a_frame(result, version):
            return result
        if len(page.events) > 1:
            room = max(1, room // 2)
        elif not binary:
            binary = True
        else:
            return result  # one notice larger than a frame: nothing smaller to send


def _read_page(
    page: Page, args: ReadOutputArgs, mcp_run: McpRun | None, durable: DurableRun | None
) -> dict[str, JSON]:
    result: dict[str, JSON] = {"run": args.run}
    if durable is not None:
        last = read_journal(durable, page, args.from_seq)
        last_seq = durable.journal.last_seq
        complete = durable.journal.completed is not None
    else:
        assert mcp_run is not None
        last = mcp_run.log.page(page, args.from_seq)
        last_seq = mcp_run.log.last_seq
        complete = mcp_run.log.completed is not None
        result["first_available_seq"] = mcp_run.log.first_seq
    result.update(
        {
            "events": page.events,
            "next_seq": last,
            "last_seq": last_seq,
            "complete": complete and last >= last_seq,
        }
    )
    return result


def _refuse_read(session: McpSession, run_id: str) -> NoReturn:
    if session.daemon.runs.visible(run_id, session.peer.identity) is not None:
        raise InvalidParams(
            f"run {run_id} is not durable and was started by another connection: its output "
            "is kept only for that connection (start it with durable: true to read it from "
            "anywhere)",
            {"run": run_id, "durable": False},
        )
    raise RunNotFound(f"no run {run_id!r}", {"run": run_id})


async def _control(session: McpSession, args: ControlArgs) -> dict[str, JSON]:
    """Pause, resume, cancel or signal, answering once the effect has happened."""
    live = await session.live_handle(args.run)
    match args.action:
        case "signal":
            control.send_signal(live, args.signal_name)
            return {"run": live.run_id, "status": "signalled", "signal": args.signal_name}
        case "pause" | "resume":
            kind: Literal["PAUSE", "RESUME"] = "PAUSE" if args.action == "pause" else "RESUME"
            await control.apply_control(live, kind, "")
            return {"run": live.run_id, "status": f"{args.action}d"}
        case _:
            rung = await control.apply_control(live, "CANCEL", "cancelled by MCP client")
            assert rung is not None
            # The processes are gone; a `status` right after the answer should find the
            # completion recorded too (bounded: the answer never waits on a slow reader).
            with trio.move_on_after(live.run.config.kill_wait):
                await live.done.wait()
            return {"run": live.run_id, "status": "cancelled", "rung": rung_name(rung)}


# -- tasks -------------------------------------------------------------------------------------


def _task(session: McpSession, request: McpRequest) -> McpTask:
    asked = request.params.get("taskId")
    task = session.daemon.tasks.get(asked, session.peer.identity)
    if task is None:  # the id as it was asked for (a task of another identity is not named)
        raise InvalidParams("Failed to retrieve task: task not found", {"taskId": asked})
    return task


async def get_task(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    task = _task(session, request)
    if request.era == "handshake":
        return task.describe()
    result = task.describe_modern()
    if task.status == "completed":
        result["result"] = task.tool_result(None, session.answer_room)
    elif task.status == "failed":
        call_result = task.tool_result(None, session.answer_room)
        result["error"] = {
            "code": int(InternalError.code),
            "message": task.status_message() or "failed",
            "data": call_result.get("structuredContent"),
        }
    return result


async def task_result(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    task = _task(session, request)
    await task.wait()
    return task.tool_result(session.version(request), session.answer_room)


async def list_tasks(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    """Your tasks, oldest first, in pages that fit one frame: `nextCursor` when more follow
    (the cursor is where the next page starts)."""
    cursor = request.params.get("cursor", "0")
    if not isinstance(cursor, str) or not cursor.isdigit():
        raise InvalidParams("Invalid params: unknown cursor", {"cursor": cursor})
    start = int(cursor)
    visible = session.daemon.tasks.visible(session.peer.identity)
    rest: list[JSON] = [task.describe() for task in visible[start:]]

    def page(count: int) -> dict[str, JSON]:
        result: dict[str, JSON] = {"tasks": rest[:count]}
        if count < len(rest):
            result["nextCursor"] = str(start + count)
        return result

    room = session.answer_room
    return page(most_that_fit(len(rest), lambda n: len(orjson.dumps(page(n))) <= room))


async def cancel_task(session: McpSession, request: McpRequest) -> dict[str, JSON]:
    task = _task(session, request)
    if task.terminal:
        raise InvalidParams(
            f"Cannot cancel task: already in terminal status {task.status!r}",
            {"taskId": task.task_id, "status": task.status},
        )
    if task.turn is not None:  # a turn of a Claude session: interrupt it, the session stays
        task.turn.interrupted_by_cancel = True
        if request.era == "modern":
            session.daemon.start_owned("mcp", task.turn.interrupt)
            return {}
        await task.turn.interrupt()
        await task.wait()
        return task.describe()
    if request.era == "modern":
        # Cooperative: acknowledge now, end the run through the ladder in the daemon's nursery.
        session.daemon.start_owned(
            "mcp", control.end, task.run.live, "task cancelled by MCP client"
        )
        return {}
    await control.end(task.run.live, "task cancelled by MCP client")
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
