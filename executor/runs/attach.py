"""A connection attached to a durable run: replay the journal from a seq, then follow it live.

Theory of operation: each attachment is one task in its session's nursery with its own journal
cursor.  It sends the output the cursor has ready — events that follow one another, up to
`group_bytes` of records (the pump's largest event, max_chunk; a record is read only if it
fits) — in one write, and waits on the socket like any other sender, so a slow client only
falls behind on disk: it holds one group and its encoding, no more than a record of the
largest size and its encoding, and slows neither the child nor other attachments.  One write
per group, not per event: a follower that keeps up gets much of a journal batch at a time,
and a replay reads ahead.  Replay and live tail are the same loop (the cursor reads the file
up to the journal's committed size, then waits for the next append), so there is no seam to
lose or duplicate an event at.  Every event goes through the connection's protocol state with its
original seq, which checks contiguity; after a ``process.gap`` (output the journal did not
record) the next event's seq is announced to it with ``attach_run``.

Nothing stops silently: what the journal lacks (quota, a failed write, damaged bytes) arrives
as ``process.gap`` with its reason (and for damage the seqs and bytes concerned), a write
fault as ``process.journal_error`` at once, and the completion always comes last, from memory if
the file could not take it.  A cursor that cannot be opened (no file descriptor) is retried with
a bounded backoff; if it never opens, the client gets ``process.journal_error`` and the
attachment ends.

Detach must not cut a frame in half, so it never cancels a send: it sets ``stopping`` and
cancels only the wait for new records; the group being sent goes whole.  A vanished
connection just ends the task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs
import structlog
import trio

from cc_executor.executor.runs.durable import DurableRun
from cc_executor.executor.runs.wire import event_notice
from cc_executor.protocol.claude import ClaudeEvent, StreamJsonParser
from cc_executor.protocol.connection import ServerConnection
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.notices import (
    JOURNAL_UNREADABLE,
    ClaudeNotice,
    Notice,
    RunGap,
    RunJournalError,
)
from cc_executor.supervision import CompletedEvent, Note, Output, SequencedEvent, StateEvent
from cc_executor.supervision.journal import Cursor, Gap, Journal, JournalFault, Replayed
from cc_executor.supervision.procfs import EXHAUSTED

log = structlog.get_logger()


class Follower(Protocol):
    """The connection an attachment sends to."""

    conn: ServerConnection

    @property
    def closed(self) -> bool: ...

    async def send_notice(self, notice: Notice) -> None: ...

    async def send_notices(self, notices: Sequence[Notice]) -> None: ...


@attrs.frozen
class TailSettings:
    """What a tail needs to know beyond its run: retries and whether to parse stream-json."""

    retry_initial: float  # first wait before retrying to open the journal
    retry_bound: float  # give up opening it after waiting this long in all
    claude_max_line: int | None  # a Claude run: parse its stdout (lines up to this long)
    group_bytes: int  # records sent in one write, at most (unless one record is bigger)


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


def stream_json_events(
    parser: StreamJsonParser | None, event: SequencedEvent | Gap | JournalFault
) -> list[ClaudeEvent]:
    """The Claude events a run's event completes: its stdout lines, the last line at the end
    (none without a parser: the run is not a Claude run)."""
    if parser is None:
        return []
    if isinstance(event, Output) and event.stream == "stdout":
        return parser.feed(event.data)
    if isinstance(event, CompletedEvent):
        return parser.close()
    return []


def gap_notice(run_id: str, gap: Gap) -> RunGap:
    """``process.gap``: the first missing seq, why, and what is known of the range."""
    details: dict[str, JSON] = {}
    if gap.until_seq is not None:
        details["until_seq"] = gap.until_seq
    if gap.offset is not None:
        details["offset"] = gap.offset
        details["bytes"] = gap.length
    return RunGap(run_id, gap.seq, gap.reason, details)


def fault_notice(run_id: str, fault: JournalFault) -> RunJournalError:
    """``process.journal_error`` for a write fault the journal recorded."""
    return RunJournalError(run_id, fault.seq, fault.reason, fault.policy)


async def open_cursor(journal: Journal, from_seq: int, retry: float, bound: float) -> Cursor:
    """A cursor on `journal`; short of file descriptors, retried with a backoff up to `bound`.
    Any other failure (not a regular file, EACCES, EIO) is raised at once: waiting would not
    change it, and the client would wait the whole bound for the same error.

    Raises:
        OSError: it could not be opened.
    """
    waited = 0.0
    while True:
        try:
            return journal.cursor(from_seq)
        except OSError as exc:
            if exc.errno not in EXHAUSTED or waited >= bound:
                raise
        await trio.sleep(retry)
        waited += retry
        retry *= 2


def _notices(
    run_id: str,
    ids: tuple[int | None, int | None],
    parser: StreamJsonParser | None,
    entry: Output | StateEvent | Note,
) -> list[Notice]:
    """The notice of `entry` (`ids`: the run's pid and pgid), then those of the Claude events
    its output completes."""
    notice = event_notice(run_id, *ids, entry, None)
    return [notice, *(ClaudeNotice(run_id, e) for e in stream_json_events(parser, entry))]


async def tail(session: Follower, attachment: Attachment, settings: TailSettings) -> None:
    """Send the run's events after `from_seq`, then follow until completion or detach.

    A Claude run's stdout is parsed into ``claude.event`` notices after each output, as its
    live sink does.  A journal that cannot be opened or read (no descriptor left, EIO) is said
    to the client as a ``process.journal_error`` naming it, after the events sent so far, and
    the follow ends (the run goes on; attaching again reads from where it is asked).

    Raises:
        Whatever `send_notice` raises when the connection is gone (the caller's task ends).
    """
    journal = attachment.durable.journal
    attachment.sent_seq = attachment.from_seq
    try:
        cursor = await open_cursor(
            journal, attachment.from_seq, settings.retry_initial, settings.retry_bound
        )
        with attachment.scope, cursor:
            await _send_from(cursor, session, attachment, settings)
    except OSError as exc:  # no descriptor to open it, or a read failed (EIO: a failing disk)
        seq = attachment.sent_seq + 1
        log.error("attach.journal_unreadable", error=str(exc), seq=seq)
        reason = f"{JOURNAL_UNREADABLE}: {exc}"
        await session.send_notice(RunJournalError(attachment.durable.run_id, seq, reason, "block"))
    finally:
        attachment.done.set()


async def _send_from(
    cursor: Cursor, session: Follower, attachment: Attachment, settings: TailSettings
) -> None:
    """`tail`'s loop: what `cursor` reads, sent until the completion, a detach or the end.

    Raises:
        OSError: a read of the journal failed.
    """
    durable = attachment.durable
    run_id = durable.run_id
    pid, pgid = durable.ids
    max_line = settings.claude_max_line
    parser = None if max_line is None else StreamJsonParser(max_line)
    after_gap = False
    entry: Replayed | None = None  # read, not sent yet
    while not attachment.stopping and not session.closed:
        if entry is None:
            with trio.CancelScope() as wake:
                attachment.wake = wake
                entry = await cursor.read()
            attachment.wake = None
            if entry is None or wake.cancelled_caught:
                return
        if isinstance(entry, JournalFault):
            await session.send_notice(fault_notice(run_id, entry))
            entry = None
            continue
        if isinstance(entry, Gap):
            after_gap = True
            await session.send_notice(gap_notice(run_id, entry))
            entry = None
            continue
        if after_gap:
            session.conn.attach_run(run_id, entry.seq)
            after_gap = False
        if isinstance(entry, CompletedEvent):  # nothing of the run follows it
            for event in stream_json_events(parser, entry):
                await session.send_notice(ClaudeNotice(run_id, event))
            final = event_notice(run_id, pid, pgid, entry, durable.completion)
            await session.send_notice(final)
            attachment.sent_seq = entry.seq
            attachment.completed = True
            return
        seq = entry.seq
        notices = _notices(run_id, (pid, pgid), parser, entry)
        if isinstance(entry, Output):  # with the output ready after it, as one write
            size = len(entry.data)
            group = settings.group_bytes
            entry = None
            while (ahead := cursor.next_size()) is not None and size + ahead <= group:
                entry = cursor.read_nowait()  # read only if it fits: nothing held
                if not isinstance(entry, Output) or size + len(entry.data) > group:
                    break
                seq, size = entry.seq, size + len(entry.data)
                notices += _notices(run_id, (pid, pgid), parser, entry)
                entry = None
            # What stopped the group is sent next (a state change waits at its gates).
        else:
            entry = None
        await session.send_notices(notices)
        attachment.sent_seq = seq
