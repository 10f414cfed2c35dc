"""MCP tasks: long tool calls answered at once with a task id, polled later, by any client.

Theory of operation: a task is a durable run (runs.py) plus the facts MCP wants (id,
creation time, ttl, owner).  Tasks live in one table per daemon (``Daemon.tasks``), not per
connection, so a task
survives the client that created it and another connection of the same identity polls it.
Task ids are 256 random bits (``secrets``): without auth, knowing the id is the capability.
Status follows the run: ``working`` while it runs (a PAUSE shows in ``statusMessage``), then
``completed`` (exit 0), ``cancelled`` (ended by a cancel) or ``failed`` (anything else); a
terminal status never changes.  A task of a Claude session's turn (turnwait.py) follows that
turn instead: ``working`` until it ends, then ``completed``, ``failed`` (an error result, or the
run ended first) or ``cancelled`` (tasks/cancel interrupted it).  A task is forgotten ``ttl``
after its creation once it is terminal; its durable run's journal follows the daemon's
retention as any other.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import attrs

from cc_executor.executor.mcp.runs import McpRun
from cc_executor.protocol import JSON, LimitExceeded
from cc_executor.protocol.mcp import RELATED_TASK_KEY
from cc_executor.supervision import Cancelled, RunState

if TYPE_CHECKING:
    from cc_executor.executor.config.mcp import McpConfig
    from cc_executor.executor.mcp.turnwait import TurnWait
    from cc_executor.executor.transport.frontdoor import Identity

TaskStatus = Literal["working", "completed", "failed", "cancelled"]


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat().replace("+00:00", "Z")


@attrs.define(eq=False)
class McpTask:
    """One task and the run behind it."""

    task_id: str
    run: McpRun
    created_wall: float
    ttl_ms: int
    poll_ms: int
    # A `claude_send` (or `claude_start`) task: it follows one turn of the session, not the
    # run: done when that turn ends; cancelling it interrupts the turn.
    turn: TurnWait | None = None

    @property
    def owner(self) -> str:
        return self.run.owner

    @property
    def status(self) -> TaskStatus:
        if self.turn is not None:
            if not self.turn.done.is_set():
                return "working"
            if self.turn.interrupted_by_cancel:
                return "cancelled"
            return "failed" if self.turn.failed else "completed"
        completed = self.run.log.completed
        if completed is None:
            return "working"
        if isinstance(completed.outcome, Cancelled):
            return "cancelled"
        return "completed" if self.run.succeeded else "failed"

    @property
    def terminal(self) -> bool:
        return self.status != "working"

    async def wait(self) -> None:
        """Until the task is terminal."""
        await (self.run.log.done if self.turn is None else self.turn.done).wait()

    def status_message(self) -> str | None:
        if self.turn is not None:
            return self.turn.text().split("\n", 1)[0][:200]
        log = self.run.log
        if log.completed is not None:
            return self.run.text().split("\n", 1)[0]
        if log.paused or self.run.run.state is RunState.PAUSED:
            return f"run {self.run.run_id} is paused (control resume to continue)"
        if self.run.run.state is RunState.ENDING:
            return f"run {self.run.run_id} is ending"
        return f"run {self.run.run_id} is running"

    def _fields(self) -> dict[str, JSON]:
        fields: dict[str, JSON] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": _iso(self.created_wall),
            "lastUpdatedAt": _iso(max(self.created_wall, self.run.log.updated_wall)),
        }
        message = self.status_message()
        if message is not None:
            fields["statusMessage"] = message
        return fields

    def describe(self) -> dict[str, JSON]:
        """The 2025-11-25 `Task` object."""
        return {**self._fields(), "ttl": self.ttl_ms, "pollInterval": self.poll_ms}

    def describe_modern(self) -> dict[str, JSON]:
        """The 2026-07-28 tasks extension's task fields."""
        return {**self._fields(), "ttlMs": self.ttl_ms, "pollIntervalMs": self.poll_ms}

    def tool_result(self, version: str | None, room: int) -> dict[str, JSON]:
        """What the tool call would have returned (for a terminal task); a run's in at most
        `room` bytes of JSON (McpRun.result)."""
        if self.turn is not None:
            result = self.turn.result(version, room)
        else:
            result = self.run.result(version, room)
        result["_meta"] = {RELATED_TASK_KEY: {"taskId": self.task_id}}
        return result

    def expired(self, now_wall: float) -> bool:
        return self.terminal and now_wall > self.created_wall + self.ttl_ms / 1000


class TaskTable:
    """Every task of one daemon."""

    def __init__(self, max_tasks: int) -> None:
        self._tasks: dict[str, McpTask] = {}
        self._max = max_tasks
        self._admitting = 0  # tasks admitted whose run is still being started

    def create(
        self, run: McpRun, ttl_ms: int, poll_ms: int, turn: TurnWait | None = None
    ) -> McpTask:
        self.sweep()
        task = McpTask(secrets.token_urlsafe(32), run, time.time(), ttl_ms, poll_ms, turn)
        self._tasks[task.task_id] = task
        return task

    def get(self, task_id: object, identity: Identity) -> McpTask | None:
        """The task, if `identity` may see it (its owner, or an admin)."""
        task = self._tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or not (identity.admin or task.owner == identity.name):
            return None
        return task

    def visible(self, identity: Identity) -> list[McpTask]:
        self.sweep()
        return [t for t in self._tasks.values() if identity.admin or t.owner == identity.name]

    @property
    def full(self) -> bool:
        self.sweep()
        return len(self._tasks) + self._admitting >= self._max

    @contextlib.contextmanager
    def admitting(self, config: McpConfig, ttl: object) -> Iterator[int]:
        """`admit`, with the task's place held while its run starts (the caller `create`s it
        inside): calls in flight at once cannot all take the last place."""
        ttl_ms = self.admit(config, ttl)
        self._admitting += 1
        try:
            yield ttl_ms
        finally:
            self._admitting -= 1

    def admit(self, config: McpConfig, ttl: object) -> int:
        """The ttl a new task gets (the client's, if shorter than the configured one).

        Raises:
            LimitExceeded: the table holds ``max_tasks`` already.
        """
        if self.full:
            raise LimitExceeded(
                f"too many tasks (max_tasks={config.max_tasks})",
                {"limit": "mcp.max_tasks", "value": config.max_tasks},
            )
        ttl_ms = config.task_ttl_ms
        if isinstance(ttl, int) and not isinstance(ttl, bool) and 0 < ttl < ttl_ms:
            ttl_ms = ttl
        return ttl_ms

    def sweep(self) -> None:
        now = time.time()
        for task_id in [t.task_id for t in self._tasks.values() if t.expired(now)]:
            del self._tasks[task_id]
