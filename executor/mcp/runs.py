"""Runs started by MCP tool calls, on the daemon's one run machinery.

Theory of operation
-------------------
An MCP run is an ordinary run: supervision's ``run_process`` and ``OutputPump``, started in the
MCP session's nursery (it ends with the connection, like any cc-executor run), or a durable run
started by ``DurableRuns.start`` in the daemon's nursery (journaled; it survives the client and
backs MCP tasks).  What differs is the sink.  MCP clients do not take a stream of
notifications; they want a result, progress while they wait, and pages of output on request.
So every MCP run has a ``RunLog``: a bounded in-memory view (recent output events, the tail of
each stream, pause state, completion) with an event that fires on every change.

- non-durable runs: the pump delivers straight into the RunLog;
- durable runs: the pump delivers into the journal (unchanged), and a follower task in the
  daemon's nursery reads the journal into the RunLog, so the log outlives the client too.

``read_output`` of a durable run reads its journal (the whole history); of a non-durable run,
what the RunLog still holds (``output_buffer_bytes``).
"""

from __future__ import annotations

import base64
import time
from collections import deque
from typing import TYPE_CHECKING, Literal

import attrs
import structlog
import trio

from cc_executor.executor.claude.policy import check_flags, claude_environment
from cc_executor.executor.config.mcp import McpConfig
from cc_executor.executor.runs.admission import check_capacity, start_runner
from cc_executor.executor.runs.durable import DurableRun
from cc_executor.executor.runs.limits import release_when_done
from cc_executor.executor.runs.policy import child_environment
from cc_executor.executor.runs.wire import outcome_fields, run_status
from cc_executor.protocol import (
    JSON,
    ExecuteParams,
    InvalidParams,
    SpawnFailed,
    resolve_argv,
)
from cc_executor.protocol.claude import (
    ClaudeEvent,
    ClaudeParams,
    Result,
    StreamJsonParser,
    build_argv,
    result_summary,
)
from cc_executor.supervision import (
    Completed,
    CompletedEvent,
    Exited,
    Output,
    OutputPump,
    Run,
    RunState,
    SequencedEvent,
    SpawnError,
    SpawnSpec,
    StateEvent,
    SupervisionConfig,
)
from cc_executor.supervision.journal import Gap, JournalFault

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon

log = structlog.get_logger()

Stream = Literal["stdout", "stderr"]


def _text_or_base64(data: bytes) -> dict[str, JSON]:
    """`{"data": text}` when `data` is UTF-8, else `{"data": base64, "encoding": "base64"}`."""
    try:
        return {"data": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"data": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


def _readable(data: bytes) -> str:
    """Text for humans (progress messages, text content): invalid bytes shown as U+FFFD.

    Structured results and read_output carry the lossless form."""
    return data.decode("utf-8", errors="replace")


def _tail_start(data: bytes) -> bytes:
    # A tail cut at a byte boundary may start inside a UTF-8 sequence: drop the stray bytes.
    start = 0
    while start < min(3, len(data)) and 0x80 <= data[start] < 0xC0:
        start += 1
    return data[start:]


class RunLog:
    """The MCP view of one run: bounded recent events, tails, pause state, completion."""

    def __init__(self, config: McpConfig, claude: bool = False, max_line: int = 1 << 20) -> None:
        self._config = config
        self.events: deque[Output | StateEvent | CompletedEvent | Gap] = deque()
        self._held = 0  # bytes of output in `events`
        self.first_seq = 1  # the oldest seq still held (older ones were dropped)
        self.last_seq = 0
        self.tails: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = False  # a tail lost its beginning
        self.latest = b""  # the latest output chunk, for progress messages
        self.paused = False
        self.completed: Completed | None = None
        self.gap: Gap | None = None
        self.updated_wall = time.time()
        self.done = trio.Event()
        self._changed = trio.Event()
        self._parser = StreamJsonParser(max_line) if claude else None
        self.claude_result: Result | None = None
        self.claude_session: str | None = None

    async def deliver(self, event: SequencedEvent) -> None:
        """The pump's (or the journal follower's) sink."""
        self.note(event)
        await trio.lowlevel.checkpoint()

    def note(self, event: SequencedEvent | Gap) -> None:
        if isinstance(event, Gap):
            self.gap = event
        else:
            self.last_seq = event.seq
        if isinstance(event, Output):
            self._output(event)
        elif isinstance(event, StateEvent):
            self.paused = event.state is RunState.PAUSED
            self.updated_wall = time.time()
        elif isinstance(event, CompletedEvent):
            self.completed = event.completed
            self.updated_wall = time.time()
            if self._parser is not None:
                self._claude(self._parser.close())
            self.done.set()
        self.events.append(event)
        while self._held > self._config.output_buffer_bytes and len(self.events) > 1:
            dropped = self.events.popleft()
            if isinstance(dropped, Output):
                self._held -= len(dropped.data)
            if not isinstance(dropped, Gap):
                self.first_seq = dropped.seq + 1
        self._changed.set()
        self._changed = trio.Event()

    def _output(self, event: Output) -> None:
        self._held += len(event.data)
        self.latest = event.data
        tail = self.tails[event.stream]
        tail += event.data
        limit = self._config.result_tail_bytes
        if len(tail) > limit:
            del tail[: len(tail) - limit]
            self.truncated = True
        if self._parser is not None and event.stream == "stdout":
            self._claude(self._parser.feed(event.data))

    def _claude(self, events: list[ClaudeEvent]) -> None:
        for typed in events:
            if isinstance(typed, Result) and self.claude_result is None:
                self.claude_result = typed
            session_id = getattr(typed, "session_id", None)
            if isinstance(session_id, str) and self.claude_session is None:
                self.claude_session = session_id

    async def wait_changed(self, seen_seq: int) -> None:
        """Return once an event after `seen_seq` is noted, or the run is complete."""
        while self.last_seq <= seen_seq and not self.done.is_set():
            await self._changed.wait()

    def page(self, from_seq: int, max_bytes: int) -> tuple[list[JSON], int]:
        """Events after `from_seq` still held, whole, about `max_bytes` of data (at least
        one event); and the seq to continue after."""
        events: list[JSON] = []
        size = 0
        last = from_seq
        for event in self.events:
            if isinstance(event, Gap) or event.seq <= from_seq:
                continue
            if events and size + _size(event) > max_bytes:
                break
            events.append(event_json(event))
            size += _size(event)
            last = event.seq
        return events, last


def _size(event: object) -> int:
    return len(event.data) if isinstance(event, Output) else 0


def event_json(event: Output | StateEvent | CompletedEvent | Gap) -> JSON:
    """One run event as read_output shows it."""
    match event:
        case Output(seq=seq, stream=stream, data=data):
            return {"seq": seq, "type": "output", "stream": stream, **_text_or_base64(data)}
        case StateEvent(seq=seq, state=state):
            word = "paused" if state is RunState.PAUSED else "resumed"
            return {"seq": seq, "type": word}
        case CompletedEvent(seq=seq, completed=completed):
            return {"seq": seq, "type": "completed", **outcome_fields(completed.outcome)}
        case Gap(seq=seq, reason=reason):
            return {"seq": seq, "type": "gap", "reason": reason}


@attrs.define(eq=False)
class McpRun:
    """A run started by an MCP tool call."""

    run: Run
    log: RunLog
    tool: Literal["execute", "claude"]
    owner: str  # the identity that started it
    durable: DurableRun | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def succeeded(self) -> bool:
        completed = self.log.completed
        if completed is None:
            return False
        if self.tool == "claude":
            result = self.log.claude_result
            return result is not None and not result.failed and completed.outcome == Exited(0)
        return completed.outcome == Exited(0)

    def summary(self) -> dict[str, JSON]:
        """The run's structured result: state, outcome, tails of stdout and stderr."""
        log_ = self.log
        run = self.run
        summary: dict[str, JSON] = {
            "run": run.run_id,
            "state": "completed" if log_.completed else run.state.value,
            "durable": self.durable is not None,
            "pid": run.pid,
            "argv": list(run.argv),
            "last_seq": log_.last_seq,
            "stdout_bytes": run.stdout_bytes,
            "stderr_bytes": run.stderr_bytes,
            "truncated": log_.truncated,
        }
        if log_.completed is not None:
            summary.update(outcome_fields(log_.completed.outcome))
            summary["elapsed"] = round(log_.completed.duration, 6)
        for stream in ("stdout", "stderr"):
            fields = _text_or_base64(_tail_start(bytes(log_.tails[stream])))
            summary[stream] = fields["data"]
            if "encoding" in fields:
                summary[f"{stream}_encoding"] = "base64"
        if self.tool == "claude":
            summary["claude"] = result_summary(log_.claude_result, log_.claude_session)
        return summary

    def text(self) -> str:
        """The result as text for the model: the outcome line, then the tails."""
        log_ = self.log
        lines: list[str] = []
        if log_.completed is None:
            lines.append(f"run {self.run_id} is {self.run.state.value}")
        else:
            fields = outcome_fields(log_.completed.outcome)
            lines.append(
                f"run {self.run_id} {fields['outcome']} (exit_code {fields['exit_code']}) "
                f"after {log_.completed.duration:.3f} s"
            )
        if self.tool == "claude" and log_.claude_result is not None:
            lines.append(log_.claude_result.result or "")
        for stream in ("stdout", "stderr"):
            tail = log_.tails[stream]
            if tail:
                cut = " (tail)" if log_.truncated else ""
                lines.append(f"--- {stream}{cut} ---\n{_readable(_tail_start(bytes(tail)))}")
        return "\n".join(lines)

    def status(self, now: float) -> dict[str, JSON]:
        if self.durable is not None:
            return self.durable.status(now)
        return run_status(self.run, self.log.last_seq, now)


# -- starting runs ---------------------------------------------------------------------------


@attrs.frozen
class _Plan:
    spec: SpawnSpec
    supervision: SupervisionConfig
    timeout: float | None
    idle_timeout: float | None


def _plan(daemon: Daemon, params: ExecuteParams | ClaudeParams, owner: str) -> _Plan:
    """Policy, argv, environment and limits: what the execute and claude methods apply."""
    config = daemon.config
    if isinstance(params, ExecuteParams):
        argv = resolve_argv(params)
        env = child_environment(config, params.env)
        cwd = daemon.policy.check(params, argv, env)
        spec = SpawnSpec(
            argv=argv, env=env, cwd=cwd, stdin=params.stdin, run_id=daemon.new_run_id()
        )
        spec = daemon.policy.limited(spec, owner)
        return _Plan(spec, config.supervision, params.timeout, params.idle_timeout)
    claude = config.claude
    if params.prompt is not None and len(params.prompt.encode()) > claude.max_prompt_bytes:
        raise InvalidParams(
            f"the prompt is longer than {claude.max_prompt_bytes} bytes",
            {"limit": "claude.max_prompt_bytes", "value": claude.max_prompt_bytes},
        )
    check_flags(params, claude)
    argv = build_argv(claude.binary, params)
    env = claude_environment(daemon, params.env)
    cwd = daemon.policy.check_claude(argv, params.cwd, env)
    spec = SpawnSpec(argv=argv, env=env, cwd=cwd, stdin="null", run_id=daemon.new_run_id())
    spec = daemon.policy.limited(spec, owner)
    supervision = attrs.evolve(config.supervision, interrupt_grace=claude.interrupt_grace)
    timeout = params.timeout if params.timeout is not None else claude.timeout
    return _Plan(spec, supervision, timeout, None)


async def start_run(
    daemon: Daemon,
    nursery: trio.Nursery,
    params: ExecuteParams | ClaudeParams,
    *,
    durable: bool,
    owner: str,
    live_here: int,
) -> McpRun:
    """Start a run for a tool call: in `nursery` (the session's), or durable in the daemon's.

    Raises:
        JsonRpcError: refused by policy or limits, or the process could not start.
    """
    check_capacity(daemon, None if durable else live_here)
    plan = _plan(daemon, params, owner)
    tool: Literal["execute", "claude"] = "claude" if isinstance(params, ClaudeParams) else "execute"
    mcp_config = mcp_config_of(daemon)
    run_log = RunLog(
        mcp_config, claude=tool == "claude", max_line=daemon.config.claude.max_line_bytes
    )
    if durable:
        return await _start_durable(daemon, plan, run_log, tool, owner)
    spec = plan.spec
    ticket = daemon.policy.limits.admit(owner)
    try:
        run, receive = await start_runner(
            nursery,
            spec,
            plan.supervision,
            daemon.registry,
            timeout=plan.timeout,
            idle_timeout=plan.idle_timeout,
        )
    except SpawnError as exc:
        ticket.release()
        raise SpawnFailed(exc.message, {"argv0": spec.argv[0]}) from None
    nursery.start_soon(release_when_done, ticket, run)
    pump = OutputPump(receive, run_log.deliver, plan.supervision, run.unread_bytes)
    daemon.run_started(run, mcp=True)
    nursery.start_soon(_pump_until_done, daemon, run, pump)
    return McpRun(run, run_log, tool, owner)


async def _pump_until_done(daemon: Daemon, run: Run, pump: OutputPump) -> None:
    with structlog.contextvars.bound_contextvars(run=run.run_id):
        try:
            await pump.run()
        finally:
            daemon.run_finished(run, pump.last_seq, mcp=True)


async def _start_durable(
    daemon: Daemon, plan: _Plan, run_log: RunLog, tool: Literal["execute", "claude"], owner: str
) -> McpRun:
    spec = plan.spec
    params = ExecuteParams(
        argv=spec.argv, timeout=plan.timeout, idle_timeout=plan.idle_timeout, durable=True
    )
    spec = attrs.evolve(spec, run_id=daemon.durable.new_run_id())
    ticket = daemon.policy.limits.admit(owner)
    try:
        durable = await daemon.durable.start(daemon, daemon.nursery, spec, params, owner)
    except SpawnError as exc:
        ticket.release()
        raise SpawnFailed(exc.message, {"argv0": spec.argv[0]}) from None
    assert durable.run is not None
    daemon.nursery.start_soon(release_when_done, ticket, durable.run)
    daemon.durable_started(durable)
    daemon.nursery.start_soon(follow_journal, durable, run_log)
    return McpRun(durable.run, run_log, tool, owner, durable)


async def follow_journal(durable: DurableRun, run_log: RunLog) -> None:
    """Read a durable run's journal into its RunLog until the completion (daemon's nursery)."""
    with durable.journal.cursor(0) as cursor:
        while (entry := await cursor.read()) is not None:
            if isinstance(entry, JournalFault):
                continue  # the run's status says it (journal.error)
            run_log.note(entry)
            if isinstance(entry, CompletedEvent):
                return


def read_journal(durable: DurableRun, from_seq: int, max_bytes: int) -> tuple[list[JSON], int]:
    """A durable run's events after `from_seq` from its journal, as `RunLog.page`."""
    events: list[JSON] = []
    size = 0
    last = from_seq
    with durable.journal.cursor(from_seq) as cursor:
        while (entry := cursor.read_nowait()) is not None:
            if isinstance(entry, JournalFault):
                continue
            if events and size + _size(entry) > max_bytes:
                break
            events.append(event_json(entry))
            size += _size(entry)
            if not isinstance(entry, Gap):
                last = entry.seq
    return events, last


def mcp_config_of(daemon: Daemon) -> McpConfig:
    """The daemon's MCP settings."""
    return daemon.config.mcp
