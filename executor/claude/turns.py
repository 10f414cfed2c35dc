"""A Claude session's turns: which message starts or is taken by which turn, and what each cost.

Theory of operation: the CLI starts every turn with a ``system/init`` line and ends it with
its own ``result``; a user message written with a ``uuid`` is echoed with that uuid when the
CLI takes it (``--replay-user-messages``).  So:

* a message sent while no turn runs and none waits opens turn n+1 at once (``started``);
* a message sent otherwise is *queued*: echoed while a turn runs, it was taken by that turn
  (``claude.message``); else the ``init`` after the running turn's result opens the next turn
  with the oldest queued message (named in ``claude.turn_started.messages``);
* a ``result`` ends the running turn (``claude.turn_ended``): its cost is the difference of
  the CLI's ``total_cost_usd`` (which counts the whole process) from the previous one; usage
  is per turn and summed here.

Pure bookkeeping on the pump's delivery path: nothing here awaits.  Notices go to `post`
(with seq 0: the pump numbers them); `changed` is told whenever the running/idle answer may
have changed.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable

from cc_executor.protocol import InvalidParams
from cc_executor.protocol.claude import (
    ClaudeMessageTaken,
    ClaudeTurnEnded,
    ClaudeTurnStarted,
    Result,
    SessionNotice,
    turn_result,
    usage_totals,
)
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.results import ClaudeSent


class Turns:
    """The turns of one session run (see the module docstring)."""

    def __init__(
        self, run_id: str, post: Callable[[SessionNotice], None], changed: Callable[[], None]
    ) -> None:
        self._run_id = run_id
        self._post = post
        self._changed = changed
        self.turn = 0  # the latest turn opened
        self.turns = 0  # turns ended
        self.open = False  # a turn is running
        self._queued: OrderedDict[str, str] = OrderedDict()  # uuid -> message id, not taken
        self._assigned: set[str] = set()  # uuids of the messages that opened the running turn
        self._used: set[str] = set()
        self.interrupting: int | None = None  # the turn an interrupt was asked for
        self._total_cost = 0.0  # the CLI's total_cost_usd so far (this process)
        self.cost_usd = 0.0
        self.usage = usage_totals(None)
        self.last_result: dict[str, JSON] | None = None

    @property
    def running(self) -> bool:
        """A turn runs, or a queued message waits for the next one."""
        return self.open or bool(self._queued)

    def message(self, message_id: str | None, key: str | None = None) -> tuple[str, ClaudeSent]:
        """A new message's uuid (`key`, or a new one) and reply, booked before it is written
        (the CLI may echo it before the write returns).

        Raises:
            InvalidParams: `message_id` was used already in this run.
        """
        self.check(message_id)
        message = message_id or self._generated_id()
        self._used.add(message)
        key = key or str(uuid.uuid4())
        if not self.running:
            self._assigned.add(key)
            self._open([message])
            return key, ClaudeSent(message, self.turn, "started")
        self._queued[key] = message
        self._changed()
        # The running turn, or (between a result and the next init) the one about to run.
        return key, ClaudeSent(message, self.turn if self.open else self.turn + 1, "queued")

    def check(self, message_id: str | None) -> None:
        """Raise what `message` would for `message_id`, booking nothing.

        Raises:
            InvalidParams: `message_id` was used already in this run.
        """
        if message_id is not None and message_id in self._used:
            raise InvalidParams(
                f"run {self._run_id}: message id {message_id!r} was used already",
                {"run": self._run_id, "message": message_id},
            )

    def _generated_id(self) -> str:
        """`m-<n>`, n counting the messages — skipping any id a client chose already."""
        n = len(self._used) + 1
        while f"m-{n}" in self._used:
            n += 1
        return f"m-{n}"

    def init(self) -> None:
        """A turn starts (`system/init`): the one `message` opened, or the next queued one's."""
        if self.open:
            return
        messages = []
        if self._queued:
            key, message = self._queued.popitem(last=False)
            self._assigned.add(key)
            messages.append(message)
        self._open(messages)

    def replayed(self, key: str | None) -> None:
        """The CLI took the message with uuid `key`."""
        if key is None:
            return
        if key in self._assigned:
            self._assigned.discard(key)
            return
        message = self._queued.pop(key, None)
        if message is None:
            return  # a line the CLI replays of its own (a local command's output)
        if self.open:
            self._post(ClaudeMessageTaken(self._run_id, 0, message, self.turn))
        else:
            self._open([message])

    def result(self, result: Result) -> None:
        """The running turn's `result`: it is over."""
        if not self.open:
            self._open([])  # a result with no turn seen opening is still a turn's
        total = result.total_cost_usd
        cost = None
        if isinstance(total, int | float) and not isinstance(total, bool):
            cost = round(max(0.0, total - self._total_cost), 9)
            self._total_cost = max(self._total_cost, float(total))
            self.cost_usd = round(self.cost_usd + cost, 9)
        for key, value in usage_totals(result.usage).items():
            self.usage[key] += value
        self.turns += 1
        self.open = False
        self._assigned.clear()
        interrupted = self.interrupting == self.turn
        self.interrupting = None
        self.last_result = turn_result(result, cost)
        self._post(ClaudeTurnEnded(self._run_id, 0, self.turn, self.last_result, interrupted))
        self._changed()

    def _open(self, messages: list[str]) -> None:
        self.turn += 1
        self.open = True
        self._post(ClaudeTurnStarted(self._run_id, 0, self.turn, tuple(messages)))
        self._changed()
