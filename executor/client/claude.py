"""A live Claude Code session as the client holds it: typed calls, and its events in order.

Theory of operation
-------------------
A session is a run (run.py): its events come through the run's bounded stream, in seq order,
each once — a reconnect or an attach that replays overlaps is deduplicated by seq there. The
session's own notifications (turn started and ended, a queued message taken, permission
requested and decided, state) are sequenced in the same seq space as its output, so they
take the same path. The assistant's words are in the run's stdout (stream-json); `events()`
parses it here with the protocol's own parser rather than trusting the unsequenced
`claude.event` notifications, so a replay yields every typed event exactly once as well.

The calls (`send`, `interrupt`, `answer_permission`, ...) are plain requests and may be made
from any task while another iterates the session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from cc_executor.executor.client.errors import InvalidParamsError
from cc_executor.executor.client.events import (
    Completed,
    Gap,
    JournalError,
    Output,
    Paused,
    Resumed,
    RunEvent,
    RunStatus,
    SessionNotice,
)
from cc_executor.executor.client.run import Run
from cc_executor.protocol import ErrorCode, InvalidParams, structure_params
from cc_executor.protocol.claude import (
    ClaudeEvent,
    ClaudeParams,
    ClaudeResumeParams,
    StreamJsonParser,
)
from cc_executor.protocol.claude.text import AssistantTextStream
from cc_executor.protocol.results import ClaudeSent

if TYPE_CHECKING:
    from cc_executor.executor.client.connection import Connection

# Longest stream-json line the client parses (the daemon's default `claude.max_line_bytes`).
MAX_LINE_BYTES = 16 * 1024 * 1024

SessionEvent: TypeAlias = (
    SessionNotice | ClaudeEvent | Output | Paused | Resumed | Gap | JournalError | Completed
)

CLAUDE_EVENTS = get_args(ClaudeEvent)


class ClaudeSession:
    """A handle on one Claude session run: `async for event in session`, and its calls.

    `ClaudeSession(conn, run_id)` makes the calls about a session this connection does not
    follow (a script's `send` or `allow`); `start_claude_session`, `resume_claude_session` and
    `attach_claude_session` return one that follows its events too.
    """

    def __init__(self, connection: Connection, run: Run | str) -> None:
        self._connection = connection
        self._run = run if isinstance(run, Run) else None
        self.id = run.id if isinstance(run, Run) else run  # the run id every call takes
        self._parser = StreamJsonParser(MAX_LINE_BYTES)
        self._source: AsyncIterator[RunEvent] | None = None
        self._pending: deque[SessionEvent] = deque()
        self._finished = False
        # The seq of the run event the last event yielded came from (typed events parsed from
        # stdout have none of their own).
        self.seq = 0

    def __repr__(self) -> str:
        return f"<ClaudeSession {self.id} seq={self.seq}>"

    @property
    def run(self) -> Run:
        """The run whose events this handle follows.

        Raises:
            RuntimeError: a handle made from a run id only (attach to follow the session).
        """
        if self._run is None:
            raise RuntimeError(f"session {self.id} is not followed here: attach to it")
        return self._run

    @property
    def durable(self) -> bool:
        return self.run.durable

    @property
    def completed(self) -> Completed | None:
        return self.run.completed

    # -- events ----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[SessionEvent]:
        return self.events()

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Every event of the session in order, ending with its `Completed`.

        stdout comes as the typed events its stream-json lines hold (`AssistantText`,
        `ToolUse`, `Result`, ...), stderr as `Output`; the session's own notifications as
        themselves.

        Raises:
            ConnectionLost: as `Run.events`.
        """
        # One source for every call: leaving an `async for` early loses nothing, the typed
        # events of a chunk not yet taken wait in `_pending` for the next one.
        if self._source is None:
            self._source = self.run.events()
        while True:
            if self._pending:
                yield self._pending.popleft()
                continue
            if self._finished:
                return
            try:
                event = await anext(self._source)
            except StopAsyncIteration:
                self._finished = True
                continue
            if not isinstance(event, JournalError):
                self.seq = event.seq
            if isinstance(event, Output) and event.stream == "stdout":
                self._pending.extend(self._parser.feed(event.data))
                continue
            if isinstance(event, Completed):
                self._pending.extend(self._parser.close())
            self._pending.append(event)

    async def text(self) -> AsyncIterator[str]:
        """The assistant's text as it arrives, until the session ends (a convenience)."""
        stream = AssistantTextStream()
        async for event in self.events():
            if isinstance(event, CLAUDE_EVENTS):
                piece = stream.feed(event)
                if piece:
                    yield piece

    # -- calls -----------------------------------------------------------------------------

    async def send(
        self, content: str | Sequence[Mapping[str, Any]], *, id: str | None = None
    ) -> ClaudeSent:
        """Send a user message (text, or content blocks); returns once the CLI has it."""
        params: dict[str, Any] = {
            "run": self.id,
            "content": content if isinstance(content, str) else [dict(b) for b in content],
        }
        if id is not None:
            params["id"] = id
        result = await self._connection.call("claude.send", params)
        return ClaudeSent(str(result["message"]), int(result["turn"]), result["disposition"])

    async def interrupt(self) -> int:
        """Interrupt the running turn (the session stays); returns that turn's number.

        Raises:
            InvalidParamsError: no turn is running.
        """
        result = await self._connection.call("claude.interrupt", {"run": self.id})
        return int(result["turn"])

    async def set_model(self, model: str) -> dict[str, Any]:
        """Switch the model for the following turns; returns the CLI's response."""
        result = await self._connection.call("claude.set_model", {"run": self.id, "model": model})
        return dict(result.get("response") or {})

    async def set_permission_mode(self, mode: str) -> dict[str, Any]:
        """Switch the permission mode (`default`, `acceptEdits`, `plan`, ...)."""
        params = {"run": self.id, "mode": mode}
        result = await self._connection.call("claude.set_permission_mode", params)
        return dict(result.get("response") or {})

    async def answer_permission(
        self,
        request: str,
        behavior: Literal["allow", "deny"],
        *,
        updated_input: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        """Answer a pending permission request; the first answer wins.

        Raises:
            AlreadyDecidedError: someone (or a rule, or the timeout) answered first.
        """
        params: dict[str, Any] = {"run": self.id, "request": request, "behavior": behavior}
        if updated_input is not None:
            params["updated_input"] = dict(updated_input)
        if message is not None:
            params["message"] = message
        await self._connection.call("claude.permission", params)

    async def allow(self, request: str, updated_input: Mapping[str, Any] | None = None) -> None:
        """Allow the tool use (with its input changed, if given)."""
        await self.answer_permission(request, "allow", updated_input=updated_input)

    async def deny(self, request: str, message: str | None = None) -> None:
        """Deny the tool use; Claude reads `message` as the reason."""
        await self.answer_permission(request, "deny", message=message)

    async def close(self) -> dict[str, Any]:
        """End the session: its stdin is closed, the CLI exits (or the daemon ends it after
        its close grace); returns the daemon's reply, once the run has ended."""
        return await self._connection.call("claude.close", {"run": self.id})

    async def status(self) -> RunStatus:
        """The session as the daemon sees it (`.claude`: state, turns, cost, pending)."""
        return await self._connection.run_status(self.id)

    async def cancel(self) -> str:
        """End the session at once through the cancel ladder."""
        return await self.run.cancel()

    async def detach(self) -> None:
        """Leave a durable session running without us."""
        await self._connection.detach(self.id)


# -- starting, resuming, joining ---------------------------------------------------------------


def _given(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a caller gave (None, False and empty ones are the daemon's defaults)."""
    raw: dict[str, Any] = {}
    for name, value in fields.items():
        if (
            value is None
            or value is False
            or (isinstance(value, tuple | list | dict) and not value)
        ):
            continue
        raw[name] = list(value) if isinstance(value, tuple | list) else value
    return raw


def _checked(raw: dict[str, Any], cls: type[Any]) -> dict[str, Any]:
    """`raw` as sent, once the protocol's own params class accepts it.

    Raises:
        ValueError: what the daemon would refuse with -32602, said before sending.
    """
    try:
        structure_params(raw, cls)
    except InvalidParams as exc:
        raise ValueError(exc.message.removeprefix("Invalid params: ")) from None
    return raw


async def start_claude_session(
    conn: Connection,
    prompt: str | None = None,
    *,
    model: str | None = None,
    permission_mode: str | None = None,
    allowed_tools: Sequence[str] = (),
    disallowed_tools: Sequence[str] = (),
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    resume: str | None = None,
    session_id: str | None = None,
    include_partial_messages: bool = False,
    max_turns: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float | None = None,  # noqa: ASYNC109 - the run's limit, kept by the daemon
    idle_timeout: float | None = None,
    durable: bool = False,
) -> ClaudeSession:
    """Start a live Claude Code session (`claude {session: true}`): one CLI process for many
    turns. `prompt`, if given, is its first message. The fields are the `claude` method's.

    Raises:
        ValueError: params the protocol refuses (checked here, before sending).
        PolicyRefusedError, LimitExceededError, InvalidStateError (a busy Claude session), ...
    """
    fields = dict(locals())
    del fields["conn"]
    raw = _checked({"session": True, **_given(fields)}, ClaudeParams)
    run = await conn.start_run("claude", raw, durable=durable)
    return ClaudeSession(conn, run)


async def resume_claude_session(
    conn: Connection,
    session: str,
    prompt: str | None = None,
    *,
    model: str | None = None,
    permission_mode: str | None = None,
    allowed_tools: Sequence[str] = (),
    cwd: str | None = None,
    include_partial_messages: bool = False,
    durable: bool = False,
) -> ClaudeSession:
    """Continue Claude session `session` (its UUID, e.g. from a lost run's status) in a new
    session run (`claude.resume`, the CLI's `--resume`)."""
    fields = dict(locals())
    del fields["conn"]
    raw = _checked(_given(fields), ClaudeResumeParams)
    run = await conn.start_run("claude.resume", raw, durable=durable)
    return ClaudeSession(conn, run)


async def attach_claude_session(conn: Connection, run: str, from_seq: int = 0) -> ClaudeSession:
    """Join a durable session started elsewhere: every event after `from_seq` (its permission
    requests still pending among them), then live ones.

    Raises:
        InvalidParamsError: the run is not a Claude session run (-32602, as the daemon's
            claude.* methods say; we are detached from it again).
    """
    attached = await conn.attach(run, from_seq)
    if attached.info.get("claude") is None:  # not live: a session's status still says so
        claude = (await conn.run_status(run)).claude
        if not (claude and claude.get("session")):
            await attached.detach()
            raise InvalidParamsError(
                ErrorCode.INVALID_PARAMS, f"run {run} is not a Claude session run", {"run": run}
            )
    return ClaudeSession(conn, attached)
