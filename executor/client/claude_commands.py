"""`ccx claude` and its subcommands: the interactive session, and one request each for scripts.

`ccx claude` and `ccx claude attach` are a console (claude_term.py); `send`, `approve`,
`interrupt`, `close` and `status` send one request, print its answer (`--json`: as JSON) and
exit 0, or print the daemon's refusal and exit 1 — 3 for an `approve` someone else answered
first (the message says who).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from cc_executor.executor.client.claude import (
    ClaudeSession,
    attach_claude_session,
    resume_claude_session,
    start_claude_session,
)
from cc_executor.executor.client.claude_term import Console, run_console
from cc_executor.executor.client.claude_words import input_text
from cc_executor.executor.client.commands import Invocation, UsageError, working_dir
from cc_executor.executor.client.connection import Connection
from cc_executor.executor.client.errors import AlreadyDecidedError, InvalidParamsError
from cc_executor.protocol import ErrorCode

ALREADY_DECIDED_STATUS = 3


async def _start(inv: Invocation) -> int:
    args = inv.args
    async with inv.connect() as conn:
        if args.durable and not conn.supports_durable:
            raise UsageError(f"--durable needs durable runs; the daemon at {conn.url} has none")
        options: dict[str, Any] = {
            "model": args.model,
            "permission_mode": args.permission_mode,
            "allowed_tools": args.allowed_tools,
            "cwd": working_dir(args, inv.target),
            "include_partial_messages": True,  # the text as it is written
            "durable": args.durable,
        }
        try:
            if args.resume:
                session = await resume_claude_session(conn, args.resume, args.prompt, **options)
            else:
                session = await start_claude_session(conn, args.prompt, **options)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        inv.term.message(
            f"ccx: Claude session {session.id}"
            + (" (durable)" if session.durable else "")
            + "; Ctrl-C interrupts a turn, Ctrl-D ends the session, /help says more"
        )
        console = Console(
            session, inv.term, inv.target, "start", conn.greeting.session_id,
            inv.config.stdin_chunk,
        )  # fmt: skip
        if args.prompt:
            console.state = "running"  # the first turn is on its way: no prompt before it
            console.sent.append(args.prompt)  # ours: not shown again as someone else's
        return await run_console(console, conn, inv.config.connection.connect_timeout)


async def _attach(inv: Invocation) -> int:
    async with inv.connect() as conn:
        if not conn.supports_durable:
            raise UsageError(f"attach needs durable runs; the daemon at {conn.url} has none")
        session = await attach_claude_session(conn, inv.args.run, inv.args.from_seq)
        last = session.run.info.get("last_seq")
        inv.term.message(
            f"ccx: Claude session {session.id} is over; what happened in it:"
            if session.run.info.get("state") == "completed"
            else f"ccx: joined Claude session {session.id}; Ctrl-C interrupts a turn, "
            "Ctrl-D leaves the session running, /close ends it"
        )
        console = Console(
            session, inv.term, inv.target, "attach", conn.greeting.session_id,
            inv.config.stdin_chunk,
        )  # fmt: skip
        console.replay_until = last if isinstance(last, int) else 0
        return await run_console(console, conn, inv.config.connection.connect_timeout)


def _session(inv: Invocation, conn: Connection) -> ClaudeSession:
    """A handle on a session for one request (its events are not followed)."""
    return ClaudeSession(conn, inv.args.run)


async def _send(inv: Invocation) -> int:
    text = sys.stdin.read() if inv.args.text == "-" else inv.args.text
    async with inv.connect() as conn:
        sent = await _session(inv, conn).send(text, id=inv.args.message_id)
    if inv.args.json:
        await inv.say_json(
            {"message": sent.message, "turn": sent.turn, "disposition": sent.disposition}
        )
    else:
        how = "starts" if sent.disposition == "started" else "is queued for"
        await inv.say(f"message {sent.message} {how} turn {sent.turn}")
    return 0


async def _approve(inv: Invocation) -> int:
    args = inv.args
    if args.message is not None and not args.deny:
        raise UsageError("--message goes with --deny")
    behavior: Literal["allow", "deny"] = "deny" if args.deny else "allow"
    async with inv.connect() as conn:
        try:
            await _session(inv, conn).answer_permission(
                args.request, behavior, message=args.message
            )
        except AlreadyDecidedError as exc:
            if args.json:
                await inv.say_json({"decided": False, **(exc.data or {})})
            how = {"allow": "allowed", "deny": "denied"}.get(exc.behavior or "", "decided")
            inv.term.message(
                f"ccx claude approve: request {args.request} was {how} already, "
                f"by {exc.decided_by or 'someone else'}"
            )
            return ALREADY_DECIDED_STATUS
    if args.json:
        await inv.say_json({"decided": True, "behavior": behavior})
    else:
        await inv.say(f"request {args.request} {'denied' if args.deny else 'allowed'}")
    return 0


async def _interrupt(inv: Invocation) -> int:
    async with inv.connect() as conn:
        turn = await _session(inv, conn).interrupt()
    if inv.args.json:
        await inv.say_json({"interrupted": True, "turn": turn})
    else:
        await inv.say(f"turn {turn} of session {inv.args.run} interrupted")
    return 0


async def _close(inv: Invocation) -> int:
    async with inv.connect() as conn:
        result = await _session(inv, conn).close()
    if inv.args.json:
        await inv.say_json(result)
    else:
        await inv.say(f"session {inv.args.run} closed: {result.get('outcome', 'ended')}")
    return 0


async def _status(inv: Invocation) -> int:
    async with inv.connect() as conn:
        status = await conn.run_status(inv.args.run)
    claude = dict(status.claude or {})
    if not claude.get("session"):  # an ordinary run: no session to describe
        raise InvalidParamsError(
            ErrorCode.INVALID_PARAMS,
            f"run {status.run} is not a Claude session run",
            {"run": status.run},
        )
    if inv.args.json:
        await inv.say_json({"run": status.run, "state": status.state, "claude": claude})
        return 0
    usage = claude.get("usage") or {}
    await inv.say(
        f"session {status.run}: {claude.get('state', status.state)}, turn "
        f"{claude.get('turn')}, {claude.get('turns', 0)} turn(s) done, "
        f"${claude.get('cost_usd') or 0:.4f}, {usage.get('input_tokens', 0)} tokens in, "
        f"{usage.get('output_tokens', 0)} out; Claude session {claude.get('session_id')}"
    )
    for request in claude.get("pending") or []:
        tool = request.get("tool")
        await inv.say(
            f"  pending {request.get('request')}: {tool} {input_text(tool, request.get('input'))}"
        )
    return 0


SUBCOMMANDS: dict[str | None, Callable[[Invocation], Awaitable[int]]] = {
    None: _start,
    "attach": _attach,
    "send": _send,
    "approve": _approve,
    "interrupt": _interrupt,
    "close": _close,
    "status": _status,
}


async def claude_command(inv: Invocation) -> int:
    """`ccx claude [SUBCOMMAND]`."""
    if inv.args.json and inv.args.claude_command in (None, "attach"):
        raise UsageError("--json is for the script subcommands (send, approve, status, ...)")
    return await SUBCOMMANDS[inv.args.claude_command](inv)
