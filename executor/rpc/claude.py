"""The JSON-RPC methods of a live Claude session run: claude.send, .interrupt, .set_model,
.set_permission_mode, .permission, .close (run-targeted) and claude.resume (a new run).

Each is a thin call into the run's ``ClaudeSession`` (claude/session.py), which the MCP tools
call too; the session raises the wire's errors.  The run-targeted ones are served by the run's
stdin queue (rpc/runs.py): one at a time per run and connection, in order, and never behind a
CANCEL, which has its own queue.  A run that is not a session run is -32602; one the caller may
not see is -32002, as for every run method.  A permission mode the daemon's policy forbids
(``bypassPermissions`` unless sandboxed) is -32001 here, as it is at the start.

A reply precedes the notices its request causes (``claude.turn_started`` and ``claude.state``
after claude.send's, ``claude.permission_decided`` after claude.permission's, the turn's end
after claude.interrupt's): the session calls the request's `hold` as it causes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cc_executor.executor.claude.controls import Hold, no_hold
from cc_executor.executor.claude.policy import check_permission_mode
from cc_executor.executor.claude.session import session_of
from cc_executor.executor.rpc.batch import Handled
from cc_executor.executor.rpc.handlers import RunHandler, SessionHandler, claude
from cc_executor.protocol import Id, InternalError
from cc_executor.protocol.claude import (
    ClaudeCloseParams,
    ClaudeInterruptParams,
    ClaudePermissionParams,
    ClaudeResumeParams,
    ClaudeSendParams,
    ClaudeSetModelParams,
    ClaudeSetPermissionModeParams,
)
from cc_executor.protocol.results import (
    ClaudeAnswered,
    ClaudeClosed,
    ClaudeDecided,
    ClaudeInterrupted,
)

if TYPE_CHECKING:
    from cc_executor.executor.rpc.runs import RunHandle
    from cc_executor.executor.rpc.session import Session


def hold(session: Session, handle: RunHandle) -> Hold:
    """The hold of the request being answered on the run's session notices: once called,
    they wait on this connection until its reply is out (gates.py).  The session calls it
    just before it posts them, with nothing left to wait for but the reply, so the pump that
    waits at the gate never waits for the handler.  Nothing is held inside a batch (its
    array goes out when every element is done: docs/protocol.md)."""
    job = handle.answering
    if job is None or job.batch is not None:
        return no_hold
    request_id, run_id = job.request.id, handle.live.run_id

    def holding() -> None:
        if request_id in session.conn.pending_ids:  # not answered or given up meanwhile
            session.gates.close(request_id, run_id, "claude")
            session.conn.hold(request_id, run_id, "claude")

    return holding


def decider(session: Session) -> str:
    """Who a permission answer from this connection is journaled as."""
    return f"client:{session.peer.identity.name}/{session.session_id}"


async def send(session: Session, handle: RunHandle, params: ClaudeSendParams) -> Handled:
    claude = session_of(handle.live)
    return Handled(await claude.send(params.content, params.id, hold(session, handle)))


async def interrupt(session: Session, handle: RunHandle, params: ClaudeInterruptParams) -> Handled:
    turn = await session_of(handle.live).interrupt(hold=hold(session, handle))
    return Handled(ClaudeInterrupted(turn))


async def set_model(session: Session, handle: RunHandle, params: ClaudeSetModelParams) -> Handled:
    return Handled(ClaudeAnswered(await session_of(handle.live).set_model(params.model)))


async def set_permission_mode(
    session: Session, handle: RunHandle, params: ClaudeSetPermissionModeParams
) -> Handled:
    claude = session_of(handle.live)
    check_permission_mode(params.mode, session.daemon.config.claude)
    response = await claude.set_permission_mode(params.mode)
    return Handled(ClaudeAnswered(response))


async def permission(
    session: Session, handle: RunHandle, params: ClaudePermissionParams
) -> Handled:
    await session_of(handle.live).answer(
        params.request,
        params.behavior,
        decider(session),
        params.updated_input,
        params.message,
        hold(session, handle),
    )
    return Handled(ClaudeDecided())


async def close(session: Session, handle: RunHandle, params: ClaudeCloseParams) -> Handled:
    """Close the session; the reply carries how the run ended."""
    live = handle.live
    await session_of(live).close()
    await live.done.wait()
    if live.completion is None:  # the keeper records one before `done`, always
        raise InternalError(f"run {live.run_id} ended without a completion")
    return Handled(ClaudeClosed(live.run_id, live.completion))


async def resume(session: Session, request_id: Id, params: ClaudeResumeParams) -> Handled:
    """`claude {session: true, resume: <session>, ...}`."""
    return await claude(session, request_id, params.claude_params())


RUN_HANDLERS: dict[str, RunHandler] = {
    "claude.send": send,
    "claude.interrupt": interrupt,
    "claude.set_model": set_model,
    "claude.set_permission_mode": set_permission_mode,
    "claude.permission": permission,
    "claude.close": close,
}
SESSION_HANDLERS: dict[str, SessionHandler] = {"claude.resume": resume}
