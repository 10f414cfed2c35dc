"""The MCP tools of live Claude sessions: start, send, interrupt, answer, read.

Theory of operation: each tool calls the one session object of the run (``live.claude``, an
executor/claude ``ClaudeSession``) exactly as the JSON-RPC ``claude.*`` handlers do — no
second implementation.  What MCP adds is waiting: ``claude_send`` (and ``claude_start`` with a
prompt) answers when the turn that took the message has ended, with progress carrying that
turn's text, or as a task (turnwait.py) — its result is the turn's text and result.  A session
started by this connection has its SessionView already (runs.py); a durable one started
elsewhere gets one by following its journal, like a task's run; a non-durable session of
another connection can be steered but not waited on (``wait: false``).
"""

from __future__ import annotations

import attrs
import orjson
import structlog
import trio

from cc_executor.executor.claude.session import ClaudeSession
from cc_executor.executor.mcp.progress import ProgressReporter
from cc_executor.executor.mcp.runlog import RunLog, halve_longest
from cc_executor.executor.mcp.runs import McpRun, start_mcp_run
from cc_executor.executor.mcp.session import Call, McpSession, NoAnswer, most_that_fit
from cc_executor.executor.mcp.sessionview import SessionView
from cc_executor.executor.mcp.turnwait import TurnWait
from cc_executor.executor.runs.live import LiveRun
from cc_executor.protocol import JSON, InvalidParams, RunNotFound
from cc_executor.protocol.mcp import McpRequest, tool_result
from cc_executor.protocol.mcp_session_tools import (
    ClaudeCloseArgs,
    ClaudeInterruptArgs,
    ClaudePermissionArgs,
    ClaudeSendArgs,
    ClaudeSessionArgs,
    ClaudeStartArgs,
    SessionToolArgs,
)
from cc_executor.protocol.results import ClaudeSent
from cc_executor.protocol.server_codec import completion_fields

log = structlog.get_logger()


def answered_by(session: McpSession) -> str:
    """Who an answer from this connection is, in `claude.permission_decided.by`."""
    return f"client:{session.peer.identity.name}/{session.session_id}"


async def _session_run(session: McpSession, run_id: str) -> tuple[LiveRun, ClaudeSession]:
    live = await session.live_handle(run_id)
    if not isinstance(live.claude, ClaudeSession):
        raise RunNotFound(f"run {run_id} is not a Claude session", {"run": run_id})
    return live, live.claude


def _view(session: McpSession, live: LiveRun) -> tuple[McpRun, SessionView] | None:
    """The run and view a wait follows; a durable session started elsewhere is followed from
    its journal from now on (None: a non-durable session of another connection)."""
    mcp_run = session.find_run(live.run_id)
    if mcp_run is None and live.durable is not None:
        followed = session.daemon.followed
        mcp_run = followed.get(live.run_id)  # the view another connection made, if any
        if mcp_run is None:
            run_log = RunLog(session.daemon.config.mcp)
            run_log.session = SessionView(live.run_id, session.daemon.config.mcp)
            mcp_run = McpRun(live, run_log, "claude")
            followed.follow(session.daemon, mcp_run)
        session.runs[live.run_id] = mcp_run
    if mcp_run is None or mcp_run.log.session is None:
        return None
    return mcp_run, mcp_run.log.session


async def session_tool(
    session: McpSession, request: McpRequest, args: SessionToolArgs, version: str | None
) -> dict[str, JSON]:
    """One call of a session tool (its failures raise the wire's errors: a tool error)."""
    match args:
        case ClaudeStartArgs():
            return await _start(session, request, args, version)
        case ClaudeSendArgs(params=params, wait=wait):
            live, claude = await _session_run(session, params.run)
            followed = _view(session, live) if wait else None
            if wait and followed is None:
                raise InvalidParams(
                    f"session {params.run} is not durable and not this connection's: "
                    "send with wait: false and read it with claude_session",
                    {"run": params.run},
                )
            sent = await claude.send(params.content, params.id)
            if followed is None:
                return _sent(live, sent, version)
            return await _wait(session, request, TurnWait(*followed, sent), version)
        case ClaudeInterruptArgs(params=params):
            live, claude = await _session_run(session, params.run)
            turn = await claude.interrupt()
            return _structured({"run": live.run_id, "interrupted": True, "turn": turn}, version)
        case ClaudePermissionArgs(params=p):
            live, claude = await _session_run(session, p.run)
            by = answered_by(session)
            await claude.answer(p.request, p.behavior, by, p.updated_input, p.message)
            return _structured({"run": live.run_id, "request": p.request, "decided": True}, version)
        case ClaudeCloseArgs(params=params):
            live, claude = await _session_run(session, params.run)
            await claude.close()
            await live.done.wait()
            closed: dict[str, JSON] = {"run": live.run_id, "state": "completed"}
            if live.completion is not None:
                closed.update(completion_fields(live.completion))
                closed["claude"] = (
                    None if live.completion.claude is None else dict(live.completion.claude)
                )
            return _structured(closed, version)
        case ClaudeSessionArgs(run=run_id, from_turn=from_turn):
            live, claude = await _session_run(session, run_id)
            described: dict[str, JSON] = {"run": live.run_id, **claude.snapshot()}
            followed = _view(session, live)
            if followed is not None:
                view = followed[1].describe(from_turn)
                turns = view["turns"]
                assert isinstance(turns, list)
                _fit_turns(session, described, turns, version)
            return _structured(described, version)


def _fit_turns(
    session: McpSession, described: dict[str, JSON], turns: list[JSON], version: str | None
) -> None:
    """`turns_recorded`: the turns that fit one frame with the rest of `described`, oldest
    first (at least one); `more_turns: true` when later ones were left for the next call
    (`from_turn`: the last turn shown)."""

    def fits(count: int) -> bool:
        described["turns_recorded"] = turns[:count]
        return session.fits_a_frame(described, version)

    kept = most_that_fit(len(turns), fits) if turns else 0
    described["turns_recorded"] = turns[:kept]
    if kept < len(turns):
        described["more_turns"] = True
    if kept == 1:  # one turn alone may still not fit: its text keeps its end
        _shorten_turn(session, described, turns[0], version)


def _shorten_turn(
    session: McpSession, described: dict[str, JSON], turn: JSON, version: str | None
) -> None:
    """Halve the turn's longest text (its `text`, its result's `result`), keeping the end and
    saying `truncated: true`, until the answer fits one frame."""
    assert isinstance(turn, dict)
    while not session.fits_a_frame(described, version):
        places: list[tuple[dict[str, JSON], str]] = [(turn, "text")]
        result = turn.get("result")
        if isinstance(result, dict):
            places.append((result, "result"))
        if not halve_longest(places):
            return  # nothing left to cut: the rest of the turn is small
        turn["truncated"] = True


def _structured(structured: dict[str, JSON], version: str | None) -> dict[str, JSON]:
    text = orjson.dumps(structured).decode()
    return tool_result(text, structured, is_error=False, version=version)


def _sent(live: LiveRun, sent: ClaudeSent, version: str | None) -> dict[str, JSON]:
    claude = live.claude
    state = claude.state if isinstance(claude, ClaudeSession) else "ended"
    structured: dict[str, JSON] = {"run": live.run_id, **attrs.asdict(sent), "state": state}
    text = f"message {sent.message}: turn {sent.turn} ({sent.disposition})"
    return tool_result(text, structured, is_error=False, version=version)


async def _start(
    session: McpSession, request: McpRequest, args: ClaudeStartArgs, version: str | None
) -> dict[str, JSON]:
    prompt = args.params.prompt
    params = attrs.evolve(args.params, prompt=None)  # sent below, so that we know its id
    mcp_run = await start_mcp_run(
        session.daemon,
        session.nursery,
        params,
        durable=params.durable,
        owner=session.peer.identity,
        origin=session.session_id,
    )
    session.runs[mcp_run.run_id] = mcp_run
    # Cancelled while it was starting the session, which nobody then knows of: it ends.
    session.started(request.id, mcp_run)
    assert isinstance(mcp_run.live.claude, ClaudeSession)
    assert mcp_run.log.session is not None
    if prompt is None:
        structured: dict[str, JSON] = {"run": mcp_run.run_id, **mcp_run.live.claude.snapshot()}
        text = f"session {mcp_run.run_id} started"
        return tool_result(text, structured, is_error=False, version=version)
    sent = await mcp_run.live.claude.send(prompt)
    if not args.wait:
        session.started(request.id, mcp_run)  # cancelled while the prompt waited to go
        return _sent(mcp_run.live, sent, version)
    wait = TurnWait(mcp_run, mcp_run.log.session, sent)
    return await _wait(session, request, wait, version, as_task=False)


def _task_asked(request: McpRequest) -> dict[str, JSON] | None:
    task = request.params.get("task")
    if request.era == "handshake" and isinstance(task, dict):
        return task
    if request.wants_tasks_extension:
        return {}
    return None


async def _wait(
    session: McpSession,
    request: McpRequest,
    wait: TurnWait,
    version: str | None,
    *,
    as_task: bool = True,
) -> dict[str, JSON]:
    """Answer when the turn has ended (progress meanwhile) — or at once with a task, when the
    call asked for one (`claude_send` only: `claude_start` is never a task)."""
    task = _task_asked(request) if as_task else None
    if task is not None:
        return _turn_task(session, request, wait, task.get("ttl"))
    call = Call(wait.run, interrupt=wait.interrupt)  # a cancel interrupts the turn
    session.follow(request.id, call)
    try:
        token = session.conn.progress_token(request.id)
        reporter = (
            None
            if token is None
            else ProgressReporter(session, request.id, token, wait.run, turn=wait)
        )
        async with trio.open_nursery() as nursery:
            if reporter is not None:
                nursery.start_soon(reporter.run)
            await wait.follow()
            if reporter is not None:
                await reporter.stop()
    finally:
        session.unfollow(request.id)
    if call.cancelled:
        raise NoAnswer
    return wait.result(version, session.answer_room)


def _turn_task(
    session: McpSession, request: McpRequest, wait: TurnWait, ttl: object
) -> dict[str, JSON]:
    config = session.daemon.config.mcp
    table = session.daemon.tasks
    ttl_ms = table.admit(config, ttl)
    task = table.create(wait.run, ttl_ms, config.task_poll_interval_ms, turn=wait)
    session.daemon.start_owned("mcp", wait.follow)
    log.info("mcp.task", task_run=wait.run.run_id, turn_of=wait.sent.message, era=request.era)
    if request.era == "modern":
        return {**task.describe_modern(), "resultType": "task"}
    return {"task": task.describe()}
