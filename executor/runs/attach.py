"""A connection attached to a durable run: replay the journal from a seq, then follow it live.

Theory of operation: each attachment is one task in its session's nursery with its own journal
cursor.  It sends one record at a time and waits on the socket like any other sender, so a slow
client only falls behind on disk: it holds one record in memory and slows neither the child nor
other attachments.  Replay and live tail are the same loop (the cursor reads the file up to the
journal's committed size, then waits for the next append), so there is no seam to lose or
duplicate an event at.  Every event goes through the connection's protocol state with its
original seq, which checks contiguity; after a ``process.gap`` (output the journal did not
record) the next event's seq is announced to it with ``attach_run``.

Detach must not cut a frame in half, so it never cancels a send: it sets ``stopping`` and
cancels only the wait for new records.  A vanished connection just ends the task.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import trio

from cc_executor.executor.runs.durable import DurableRun
from cc_executor.executor.runs.wire import event_notice
from cc_executor.protocol.claude import ClaudeEvent, StreamJsonParser
from cc_executor.protocol.connection import ServerConnection
from cc_executor.protocol.notices import ClaudeNotice, Notice, RunGap
from cc_executor.supervision import CompletedEvent, Output
from cc_executor.supervision.journal import Gap


class Follower(Protocol):
    """The connection an attachment sends to."""

    conn: ServerConnection

    @property
    def closed(self) -> bool: ...

    async def send_notice(self, notice: Notice) -> None: ...


@attrs.define(eq=False)
class Attachment:
    """One connection following one durable run."""

    durable: DurableRun
    from_seq: int
    stopping: bool = False
    sent_seq: int = 0  # the seq of the last event sent
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    wake: trio.CancelScope | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    completed: bool = False  # the run's completion has been sent

    def stop(self) -> None:
        """Stop after the event being sent (if any); `done` is set once stopped."""
        self.stopping = True
        if self.wake is not None:
            self.wake.cancel()


async def tail(session: Follower, attachment: Attachment, claude_max_line: int | None) -> None:
    """Send the run's events after `from_seq`, then follow until completion or detach.

    `claude_max_line`: the run is a Claude run whose stdout is parsed (lines up to this long)
    into ``claude.event`` notices after each output, as its live sink does.

    Raises:
        Whatever `send_notice` raises when the connection is gone (the caller's task ends).
    """
    durable = attachment.durable
    run_id = durable.run_id
    meta = durable.journal.meta
    parser = None if claude_max_line is None else StreamJsonParser(claude_max_line)
    attachment.sent_seq = attachment.from_seq
    try:
        with attachment.scope, durable.journal.cursor(attachment.from_seq) as cursor:
            after_gap = False
            while not attachment.stopping and not session.closed:
                entry = None
                with trio.CancelScope() as wake:
                    attachment.wake = wake
                    entry = await cursor.read()
                attachment.wake = None
                if entry is None or wake.cancelled_caught:
                    return
                if isinstance(entry, Gap):
                    await session.send_notice(RunGap(run_id, entry.seq, entry.reason))
                    after_gap = True
                    continue
                if after_gap:
                    session.conn.attach_run(run_id, entry.seq)
                    after_gap = False
                final = durable.completion if isinstance(entry, CompletedEvent) else None
                typed: list[ClaudeEvent] = []
                if parser is not None:
                    if isinstance(entry, Output) and entry.stream == "stdout":
                        typed = parser.feed(entry.data)
                    elif final is not None or isinstance(entry, CompletedEvent):
                        typed = parser.close()
                if isinstance(entry, CompletedEvent):  # nothing of the run follows it
                    for event in typed:
                        await session.send_notice(ClaudeNotice(run_id, event))
                    typed = []
                await session.send_notice(event_notice(run_id, meta.pid, meta.pgid, entry, final))
                for event in typed:
                    await session.send_notice(ClaudeNotice(run_id, event))
                attachment.sent_seq = entry.seq
                if isinstance(entry, CompletedEvent):
                    attachment.completed = True
                    return
    finally:
        attachment.done.set()
