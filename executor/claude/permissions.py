"""A Claude session's permission broker: every `can_use_tool` request decided exactly once.

Theory of operation
-------------------
With ``--permission-prompt-tool stdio`` the CLI asks before using a tool its own rules do not
allow, and waits — indefinitely — for the answer.  The broker makes sure it gets exactly one,
from exactly one decider:

* ``request``: the operator's rules (``claude.permission_rules``, the policy file) are tried
  first, in order; the first that matches decides at once (``rule:<name>``).  Otherwise the
  request is *pending*: a ``claude.permission_request`` is posted into the run's sequenced
  stream (every attached connection sees it; a durable run's journal keeps it) with its
  ``expires_at``.
* ``answer``: a client's decision (``client:<identity>/<connection>``, or the MCP tool's).
  The first decision wins: decided synchronously, before any await, so two answers racing
  cannot both win; a later one gets -32014 naming who decided, how and when.
* the timer (``serve``, a task of the session's): a request still pending at its deadline
  is decided by ``claude.permission_default`` (``timeout``; deny says "no answer within
  <t> s").  The clock stops while the run is PAUSED (``set_paused``): a stopped CLI cannot
  act on an answer, and the user who paused it is not there to give one, so a pause never
  times a request out; on RESUME every pending deadline moves on by the time it spent
  paused, and each moved one is posted again as ``claude.permission_deadline`` with its new
  ``expires_at`` (the pending request's ``expires_at``, as ``status`` lists it, too).
* ``withdraw``: the CLI cancelled the request (``control_cancel_request``, e.g. after an
  interrupt), its turn ended with the request still pending (``withdraw_all`` on the turn's
  ``result``: the CLI gave it up, as on stdin EOF, and does not say so), or the run ended
  (``close``): decided ``cancelled``; the CLI is not answered.  A request belongs to its
  turn, so its decision always precedes that turn's ``claude.turn_ended``.

Each decision is posted as ``claude.permission_decided`` (who, how, when; journaled for a
durable run) and logged, and — unless withdrawn — answered to the CLI through ``respond``
(queued for the session's stdin writer: deciding never waits on the pipe).  Decisions are
remembered (the last ``KEPT_DECISIONS``) so a late answer can be told who was first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
import orjson
import structlog
import trio

from cc_executor.executor.claude.controls import Hold, no_hold
from cc_executor.executor.config.claude import Behavior, PermissionRule, rule_text
from cc_executor.protocol import InvalidParams, LimitExceeded
from cc_executor.protocol.claude import (
    ClaudePermissionDeadline,
    ClaudePermissionDecided,
    ClaudePermissionRequest,
    SessionNotice,
    session_params,
)
from cc_executor.protocol.claude.session import control_success_line, permission_response
from cc_executor.protocol.errors import AlreadyDecided
from cc_executor.protocol.messages import JSON

log = structlog.get_logger()

# How many decided requests a session remembers (to answer a late `claude.permission`).
KEPT_DECISIONS = 1000


@attrs.frozen
class PermissionSettings:
    """The daemon's permission policy for session runs (config/claude.py)."""

    timeout: float
    default: Behavior
    rules: tuple[PermissionRule, ...] = ()
    max_answer_bytes: int = 4 * 1024 * 1024  # the stdin bound: a longer answer is refused


@attrs.frozen
class Decision:
    """How a request was decided, by whom, when (unix time)."""

    behavior: str
    by: str
    at: float
    message: str | None = None


@attrs.define(eq=False)
class Pending:
    """A request waiting for its answer."""

    notice: ClaudePermissionRequest  # seq 0: the pump numbers what is posted
    deadline: float  # trio clock


class PermissionBroker:
    """The permission requests of one session run (see the module docstring)."""

    def __init__(
        self,
        run_id: str,
        settings: PermissionSettings,
        post: Callable[[SessionNotice], None],
        respond: Callable[[str, dict[str, JSON]], None],
        changed: Callable[[], None],
    ) -> None:
        self._run_id = run_id
        self._settings = settings
        self._post = post
        self._respond = respond  # answers the CLI's request (request id, response)
        self._changed = changed  # the session's state may have changed
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self._decided: OrderedDict[str, Decision] = OrderedDict()
        self._timer: trio.CancelScope | None = None
        self._paused_at: float | None = None  # trio clock, while the run is PAUSED
        self.closed = False

    # -- what the session feeds in (synchronous: called from the pump's delivery) ----------

    def request(self, request_id: str | None, body: Any) -> None:
        """A `can_use_tool` request of the CLI's: decided by a rule, or pending."""
        if request_id is None or not isinstance(body, dict):
            log.warning("claude.permission_malformed", run=self._run_id)
            return
        if request_id in self.pending or request_id in self._decided:
            return  # the CLI never asks twice with one id; a duplicate line changes nothing
        tool = body.get("tool_name") if isinstance(body.get("tool_name"), str) else None
        tool_input = body.get("input")
        timeout = self._settings.timeout
        notice = ClaudePermissionRequest(
            run=self._run_id,
            seq=0,
            request=request_id,
            tool=tool,
            input=tool_input,
            tool_use_id=body.get("tool_use_id")
            if isinstance(body.get("tool_use_id"), str)
            else None,
            suggestions=body.get("permission_suggestions"),
            expires_at=round(time.time() + timeout, 3),
        )
        self._post(notice)
        log.info("claude.permission_request", run=self._run_id, request=request_id, tool=tool)
        text = rule_text(tool, tool_input, orjson.dumps(tool_input).decode())
        for rule in self._settings.rules:
            if rule.matches(tool, text):
                self._decide(notice, rule.behavior, f"rule:{rule.name}", rule.message, None)
                return
        self.pending[request_id] = Pending(notice, trio.current_time() + timeout)
        self._changed()
        if self._timer is not None:
            self._timer.cancel()  # the timer re-reads the deadlines

    def withdraw(self, request_id: str | None, why: str) -> None:
        """The CLI withdrew the request, or the run ended: decided `cancelled`, unanswered."""
        pending = self.pending.get(request_id or "")
        if pending is not None:
            self._decide(pending.notice, "deny", "cancelled", why, None, answer=False)

    def withdraw_all(self, why: str) -> None:
        """Every pending request is withdrawn (its turn ended, or the run did)."""
        for request_id in list(self.pending):
            self.withdraw(request_id, why)

    def close(self) -> None:
        """The run is over: every pending request is withdrawn; nothing is answered after."""
        self.withdraw_all("the run ended")
        self.closed = True

    # -- what clients do --------------------------------------------------------------------

    async def answer(
        self,
        request_id: str,
        behavior: Behavior,
        by: str,
        updated_input: dict[str, Any] | None = None,
        message: str | None = None,
        hold: Hold = no_hold,
    ) -> None:
        """A client's answer; returns once it is on its way to the CLI (`hold` is called just
        before ``claude.permission_decided`` is posted: controls.py).

        Raises:
            AlreadyDecided: someone (or a rule, the timeout, a withdrawal) decided first.
            InvalidParams: the session never had such a request.
            LimitExceeded: the answer is longer than the CLI's stdin takes (it stays pending:
                decided but never written, the CLI would wait for it forever).
        """
        pending = self.pending.get(request_id)
        if pending is None:
            decided = self._decided.get(request_id)
            if decided is None:
                raise InvalidParams(
                    f"run {self._run_id} has no permission request {request_id!r}",
                    {"run": self._run_id, "request": request_id},
                )
            raise AlreadyDecided(
                f"permission request {request_id} was decided already by {decided.by}",
                {"decided_by": decided.by, "behavior": decided.behavior, "at": decided.at},
            )
        response = permission_response(behavior, pending.notice.input, updated_input, message)
        size = len(control_success_line(request_id, response))
        if size > self._settings.max_answer_bytes:
            raise LimitExceeded(
                f"run {self._run_id}: an answer of {size} bytes is more than the CLI's stdin "
                "takes; the request is still pending",
                {
                    "run": self._run_id,
                    "limit": "stdin_max_pending",
                    "value": self._settings.max_answer_bytes,
                },
            )
        hold()
        self._decide(pending.notice, behavior, by, message, updated_input)
        await trio.lowlevel.checkpoint()  # an await point like any call that answers

    def snapshot(self) -> list[dict[str, JSON]]:
        """The pending requests, as `status` lists them (the notice's params, without seq)."""
        listed = []
        for pending in self.pending.values():
            params = session_params(pending.notice)
            del params["seq"]
            listed.append(params)
        return listed

    # -- deciding ---------------------------------------------------------------------------

    def _decide(
        self,
        notice: ClaudePermissionRequest,
        behavior: Behavior,
        by: str,
        message: str | None,
        updated_input: dict[str, Any] | None,
        *,
        answer: bool = True,
    ) -> None:
        request_id = notice.request
        self.pending.pop(request_id, None)
        if behavior == "deny" and message is None:
            message = f"denied by {by}"
        decision = Decision(behavior, by, round(time.time(), 3), message)
        self._decided[request_id] = decision
        while len(self._decided) > KEPT_DECISIONS:
            self._decided.popitem(last=False)
        self._post(
            ClaudePermissionDecided(
                run=self._run_id,
                seq=0,
                request=request_id,
                behavior=behavior,
                by=by,
                at=decision.at,
                message=message,
                updated_input=updated_input,
            )
        )
        log.info(
            "claude.permission_decided",
            run=self._run_id,
            request=request_id,
            tool=notice.tool,
            behavior=behavior,
            by=by,
            at=decision.at,
        )
        if answer and not self.closed:
            response = permission_response(behavior, notice.input, updated_input, message)
            self._respond(request_id, response)
        self._changed()

    def set_paused(self, paused: bool) -> None:
        """Stop (PAUSED) or restart (RESUMED) the timeout clock; see the module docstring."""
        now = trio.current_time()
        if paused and self._paused_at is None:
            self._paused_at = now
        elif not paused and self._paused_at is not None:
            timeout = self._settings.timeout
            for pending in self.pending.values():  # one posted while paused: from its post
                pending.deadline += now - max(self._paused_at, pending.deadline - timeout)
                self._restamp(pending, now)
            self._paused_at = None
        else:
            return
        if self._timer is not None:
            self._timer.cancel()  # the timer re-reads the deadlines

    def _restamp(self, pending: Pending, now: float) -> None:
        """Post a moved deadline, and keep it as the request's (status, attach)."""
        expires_at = round(time.time() + (pending.deadline - now), 3)
        pending.notice = attrs.evolve(pending.notice, expires_at=expires_at)
        request = pending.notice.request
        self._post(ClaudePermissionDeadline(self._run_id, 0, request, expires_at))
        log.info("claude.permission_deadline", run=self._run_id, request=request, at=expires_at)

    # -- the session's tasks ----------------------------------------------------------------

    async def serve(self) -> None:
        """Decide requests whose time is up; until cancelled (a task of the session's)."""
        settings = self._settings
        while True:
            deadline = min((p.deadline for p in self.pending.values()), default=math.inf)
            if self._paused_at is not None:
                deadline = math.inf
            with trio.CancelScope(deadline=deadline) as self._timer:
                await trio.sleep_forever()
            self._timer = None
            now = trio.current_time()
            due = [] if self._paused_at is not None else list(self.pending.values())
            for pending in [p for p in due if p.deadline <= now]:
                message = f"no answer within {settings.timeout:g} s"
                self._decide(pending.notice, settings.default, "timeout", message, None)
