"""A connection attached to a durable run: replay the journal from a seq, then follow it live.

Theory of operation: each attachment is one task in its session's nursery with its own journal
cursor.  It sends one record at a time and waits on the socket like any other sender, so a slow
client only falls behind on disk: it holds one record in memory and slows neither the child nor
other attachments.  Replay and live tail are the same loop (the cursor reads the file up to the
journal's committed size, then waits for the next append), so there is no seam to lose or
duplicate an event at.  Every event goes through the connection's protocol state with its
original seq, which checks contiguity; after a ``process.gap`` (output the journal did not
record) the next event's seq is announced to it with ``attach_run``.

Nothing stops silently: what the journal lacks (quota, a failed write, damaged bytes) arrives
as ``process.gap`` with its reason (and for damage the seqs and bytes concerned), a write
fault as ``process.journal_error`` at once, and the completion always comes last, from memory if
the file could not take it.  A cursor that cannot be opened (no file descriptor) is retried with
a bounded backoff; if it never opens, the client gets ``process.journal_error`` and the
attachment ends.

Detach must not cut a frame in half, so it never cancels a send: it sets ``stopping`` and
cancels only the wait for new records.  A vanished connection just ends the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from cc_executor.executor.runs.durable import DurableRun
from cc_executor.executor.runs.wire import completion_params_of, state_params_of
from cc_executor.protocol import JSON, PROCESS_COMPLETED, PROCESS_GAP, PROCESS_JOURNAL_ERROR
from cc_executor.supervision import CompletedEvent, Output, StateEvent
from cc_executor.supervision.journal import Cursor, Gap, Journal, JournalFault, Replayed

if TYPE_CHECKING:
    from cc_executor.executor.rpc.session import Session


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

    def stop(self) -> None:
        """Stop after the event being sent (if any); `done` is set once stopped."""
        self.stopping = True
        if self.wake is not None:
            self.wake.cancel()


def gap_params(run_id: str, gap: Gap) -> dict[str, JSON]:
    """``process.gap`` params: the first missing seq, why, and what is known of the range."""
    params: dict[str, JSON] = {"run": run_id, "seq": gap.seq, "reason": gap.reason}
    if gap.until_seq is not None:
        params["until_seq"] = gap.until_seq
    if gap.offset is not None:
        params["offset"] = gap.offset
        params["bytes"] = gap.length
    return params


def fault_params(run_id: str, fault: JournalFault) -> dict[str, JSON]:
    """``process.journal_error`` params."""
    return {"run": run_id, "seq": fault.seq, "reason": fault.reason, "policy": fault.policy}


async def open_cursor(journal: Journal, from_seq: int, retry: float, bound: float) -> Cursor:
    """A cursor on `journal`; short of file descriptors, retried with a backoff up to `bound`.

    Raises:
        OSError: it could not be opened.
    """
    waited = 0.0
    while True:
        try:
            return journal.cursor(from_seq)
        except OSError:
            if waited >= bound:
                raise
        await trio.sleep(retry)
        waited += retry
        retry *= 2


async def tail(session: Session, attachment: Attachment) -> None:
    """Send the run's events after `from_seq`, then follow until completion or detach."""
    durable = attachment.durable
    run_id = durable.run_id
    meta = durable.journal.meta
    config = session.daemon.config
    max_frame = config.max_frame_bytes
    sup = config.supervision
    attachment.sent_seq = attachment.from_seq
    try:
        try:
            cursor = await open_cursor(
                durable.journal, attachment.from_seq, sup.procfs_retry_initial, sup.kill_wait
            )
        except OSError as exc:
            fault = JournalFault(
                attachment.from_seq + 1, f"cannot read the journal: {exc}", "block"
            )
            await session.send(
                session.conn.notify(PROCESS_JOURNAL_ERROR, fault_params(run_id, fault))
            )
            return
        with attachment.scope, cursor:
            after_gap = False
            while not attachment.stopping and not session.closed:
                entry: Replayed | None = None
                with trio.CancelScope() as wake:
                    attachment.wake = wake
                    entry = await cursor.read()
                attachment.wake = None
                if entry is None or wake.cancelled_caught:
                    return
                if isinstance(entry, JournalFault):
                    text = session.conn.notify(PROCESS_JOURNAL_ERROR, fault_params(run_id, entry))
                    await session.send(text)
                    continue
                if isinstance(entry, Gap):
                    after_gap = True
                    await session.send(session.conn.notify(PROCESS_GAP, gap_params(run_id, entry)))
                    continue
                if after_gap:
                    session.conn.attach_run(run_id, entry.seq)
                    after_gap = False
                if isinstance(entry, Output):
                    text = session.conn.output(
                        run_id, entry.seq, entry.stream, entry.data, max_frame
                    )
                elif isinstance(entry, StateEvent):
                    method, params = state_params_of(meta.pid, meta.pgid, entry.state)
                    text = session.conn.run_event(run_id, entry.seq, method, params)
                else:
                    params = completion_params_of(meta.pid, meta.pgid, entry.completed)
                    text = session.conn.run_event(run_id, entry.seq, PROCESS_COMPLETED, params)
                await session.send(text)
                attachment.sent_seq = entry.seq
                if isinstance(entry, CompletedEvent):
                    return
    finally:
        attachment.done.set()
