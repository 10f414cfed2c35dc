"""Runs started by MCP tool calls, on the daemon's one start path.

Theory of operation: an MCP ``execute`` or ``claude`` call is planned exactly as the JSON-RPC
method of the same name (runs/plan.py, claude/plan.py) and started by ``start_run``: in the MCP
session's nursery (it ends with the connection, like any run), or durable in the daemon's
(journaled; it survives the client and backs MCP tasks).  So a Claude run started over MCP has
the watchdog, the post-result grace and the session claim of any Claude run.  What differs is
the sink: a ``RunLog`` (runlog.py), from which the call's result, its progress and
``read_output`` pages are made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs
import orjson
import trio

from cc_executor.executor.claude.plan import plan_claude
from cc_executor.executor.mcp.runlog import (
    RunLog,
    follow_journal,
    halve_longest,
    readable,
    shorten_argv,
    tail_start,
    text_or_base64,
)
from cc_executor.executor.mcp.sessionview import SessionView
from cc_executor.executor.runs.durable import DurableRun
from cc_executor.executor.runs.live import LiveRun, shown_state
from cc_executor.executor.runs.plan import plan_execute
from cc_executor.executor.runs.start import start_run
from cc_executor.protocol import JSON, ExecuteParams
from cc_executor.protocol.claude import ClaudeParams
from cc_executor.protocol.mcp import tool_result
from cc_executor.protocol.results import RunInfo
from cc_executor.protocol.server_codec import completion_fields, run_info_object
from cc_executor.supervision import Run

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon
    from cc_executor.executor.transport.frontdoor import Identity


@attrs.define(eq=False)
class McpRun:
    """A run started by an MCP tool call: the run, and its log."""

    live: LiveRun
    log: RunLog
    tool: Literal["execute", "claude"]

    @property
    def run(self) -> Run:
        return self.live.run

    @property
    def run_id(self) -> str:
        return self.live.run_id

    @property
    def owner(self) -> str:
        return self.live.owner.name

    @property
    def durable(self) -> DurableRun | None:
        return self.live.durable

    @property
    def done(self) -> bool:
        return self.log.done.is_set()

    @property
    def succeeded(self) -> bool:
        """Exit 0 (a Claude run: a successful ``result`` too)."""
        completion = self.live.completion
        return self.done and completion is not None and completion.status == "completed"

    def result(self, version: str | None, room: int) -> dict[str, JSON]:
        """The run's CallToolResult (`text`, `summary`), at most `room` bytes as JSON: the
        tails are cut shorter (halved until it fits, `truncated: true`) when their escaped
        text would not fit — JSON writes a control character in six bytes, and the result
        carries each tail twice."""
        keep: int | None = None
        while True:
            result = tool_result(
                self.text(keep), self.summary(keep), is_error=not self.succeeded, version=version
            )
            if len(orjson.dumps(result)) <= room:
                return result
            if keep == 0:
                break
            longest = max(len(tail) for tail in self.log.tails.values())
            keep = (longest if keep is None else keep) // 2
        # Still too long without any tail: an argv of long arguments (shown cut), a Claude
        # run's answer (it keeps its end).
        structured = result.get("structuredContent")
        shortened = isinstance(structured, dict) and shorten_argv(structured)
        if shortened and len(orjson.dumps(result)) <= room:
            return result
        content = result["content"]
        assert isinstance(content, list)
        first = content[0]
        assert isinstance(first, dict)
        places: list[tuple[dict[str, JSON], str]] = [(first, "text")]
        claude = structured.get("claude") if isinstance(structured, dict) else None
        if isinstance(claude, dict):
            places.append((claude, "text"))
        while len(orjson.dumps(result)) > room and halve_longest(places):
            pass
        return result

    def _tail(self, stream: Literal["stdout", "stderr"], keep: int | None) -> bytes:
        tail = bytes(self.log.tails[stream])
        return tail if keep is None or len(tail) <= keep else tail[len(tail) - keep :]

    def _cut(self, keep: int | None) -> bool:
        """The tails lost their beginning (recorded, or cut to `keep` bytes here)."""
        return self.log.truncated or (
            keep is not None and any(len(tail) > keep for tail in self.log.tails.values())
        )

    def summary(self, keep: int | None = None) -> dict[str, JSON]:
        """The run's structured result: state, outcome, tails of stdout and stderr (their
        last `keep` bytes at most)."""
        log_ = self.log
        run = self.run
        completion = self.live.completion if self.done else None
        summary: dict[str, JSON] = {
            "run": run.run_id,
            "state": shown_state(run, completion),
            "durable": self.durable is not None,
            "pid": run.pid,
            "argv": list(run.argv),
            "last_seq": log_.last_seq,
            "stdout_bytes": run.stdout_bytes,
            "stderr_bytes": run.stderr_bytes,
            "truncated": self._cut(keep),
        }
        if completion is not None:
            summary.update(completion_fields(completion))
            summary["elapsed"] = completion.execution_time
        streams: tuple[Literal["stdout", "stderr"], ...] = ("stdout", "stderr")
        for stream in streams:
            fields = text_or_base64(tail_start(self._tail(stream, keep)))
            summary[stream] = fields["data"]
            if "encoding" in fields:
                summary[f"{stream}_encoding"] = "base64"
        if self.tool == "claude":
            claude = self.live.claude
            summary["claude"] = None if claude is None else claude.summary()
        return summary

    def text(self, keep: int | None = None) -> str:
        """The result as text for the model: the outcome line, then the tails (as `summary`)."""
        log_ = self.log
        completion = self.live.completion if self.done else None
        lines: list[str] = []
        if completion is None:
            lines.append(f"run {self.run_id} is {self.run.state.value}")
        else:
            elapsed = completion.execution_time or 0.0
            lines.append(
                f"run {self.run_id} {completion.outcome} (exit_code {completion.exit_code}) "
                f"after {elapsed:.3f} s"
            )
        if self.tool == "claude" and log_.claude_result is not None:
            lines.append(log_.claude_result.result or "")
        streams: tuple[Literal["stdout", "stderr"], ...] = ("stdout", "stderr")
        for stream in streams:
            tail = self._tail(stream, keep)
            if tail:
                cut = " (tail)" if self._cut(keep) else ""
                lines.append(f"--- {stream}{cut} ---\n{readable(tail_start(tail))}")
        return "\n".join(lines)

    def info(self, now: float) -> RunInfo:
        if self.live.done.is_set() and self.durable is not None:
            return self.durable.info(now)
        return self.live.info(now)

    def status(self, now: float) -> dict[str, JSON]:
        return run_info_object(self.info(now))


async def start_mcp_run(
    daemon: Daemon,
    nursery: trio.Nursery,
    params: ExecuteParams | ClaudeParams,
    *,
    durable: bool,
    owner: Identity,
    origin: str,
) -> McpRun:
    """Start a run for a tool call: in `nursery` (the session's), or durable in the daemon's.

    Raises:
        JsonRpcError: refused by policy or limits, or the process could not start.
    """
    run_log = RunLog(daemon.config.mcp)
    if isinstance(params, ClaudeParams) and params.session:
        # Before the start: the session's first notices may come as soon as it runs.
        run_log.session = SessionView("", daemon.config.mcp)
    if isinstance(params, ClaudeParams):
        tool: Literal["execute", "claude"] = "claude"
        plan = plan_claude(daemon, params, owner.name, durable=durable)
    else:
        tool = "execute"
        run_id = daemon.new_run_id(durable)
        plan = plan_execute(daemon.config, daemon.policy, params, owner.name, run_id)
        plan = attrs.evolve(plan, durable=durable)
    live = await start_run(
        daemon, plan, owner, nursery=nursery, origin=origin, sink=None if durable else run_log
    )
    if run_log.session is not None:
        run_log.session.run_id = live.run_id
    mcp_run = McpRun(live, run_log, tool)
    if live.durable is not None:
        daemon.followed.follow(daemon, mcp_run)
    return mcp_run


class FollowedRuns:
    """The MCP view (the `McpRun`, its RunLog) of each durable run MCP follows, daemon-wide:
    one journal follower per run, in the daemon's nursery, until the run's completion —
    whichever connections wait on the run, however many come and go.

    A connection that waits on a durable run it did not start (``claude_send`` or
    ``claude_session`` on a session started elsewhere) takes the run's view from here, or
    starts it; a follower of its own would read the whole journal again and hold its own
    copy (up to ``output_buffer_bytes`` and the session's turns) until the run ended — for
    an idle session, long after the connection had gone.
    """

    def __init__(self) -> None:
        self._runs: dict[str, McpRun] = {}

    def get(self, run_id: str) -> McpRun | None:
        return self._runs.get(run_id)

    def __len__(self) -> int:
        return len(self._runs)

    def follow(self, daemon: Daemon, mcp_run: McpRun) -> None:
        """Fill `mcp_run`'s log from its durable run's journal until the run's completion."""
        assert mcp_run.durable is not None
        self._runs[mcp_run.run_id] = mcp_run
        max_line = daemon.config.claude.max_line_bytes if mcp_run.tool == "claude" else None
        daemon.start_owned("mcp", self._follow, mcp_run.durable, mcp_run, max_line)

    async def _follow(self, durable: DurableRun, mcp_run: McpRun, max_line: int | None) -> None:
        try:
            await follow_journal(durable, mcp_run.log, max_line)
        finally:
            if self._runs.get(mcp_run.run_id) is mcp_run:
                del self._runs[mcp_run.run_id]
