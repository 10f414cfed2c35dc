"""The durable runs one connection follows: a tail task each (runs/attach.py reads the journal).

A tail's events of a run wait at the session's gates like any other, so a reply still precedes
the events it causes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from cc_executor.executor.rpc.runs import Gone, SessionPart
from cc_executor.executor.runs.attach import Attachment, TailSettings, tail

if TYPE_CHECKING:
    from cc_executor.executor.rpc.session import Session
    from cc_executor.executor.runs.durable import DurableRun


class Attachments(SessionPart):
    """The durable runs one connection follows, one tail task each."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self._following: dict[str, Attachment] = {}
        # The last seq sent by each follow that has ended here (its completion sent, or its
        # journal unreadable): what a later detach of that run answers.
        self._ended: dict[str, int] = {}
        self._stopped = False  # the connection has ended: nothing more is followed

    def following(self, run_id: str) -> bool:
        return run_id in self._following

    def attach(self, durable: DurableRun, from_seq: int) -> None:
        """Follow `durable` from `from_seq` (its reply is sent, or held by a gate) — unless
        the connection has ended (a batch's attach answered after the client went): a tail
        then would wait for the run's next event in an ended session, keeping it open."""
        if self._stopped:
            return
        journal = durable.journal
        if not durable.live and journal.completed is not None and from_seq >= journal.last_seq:
            # Nothing can follow (the caller has the completion): no tail, so that an attach
            # sent right after this reply does not find the run still followed here.
            self._ended[durable.run_id] = from_seq
            return
        attachment = Attachment(durable, from_seq)
        self._following[durable.run_id] = attachment
        self._session.conn.attach_run(durable.run_id, from_seq + 1)
        self._session.nursery.start_soon(self._tail, attachment)

    async def _tail(self, attachment: Attachment) -> None:
        run_id = attachment.durable.run_id
        with structlog.contextvars.bound_contextvars(run=run_id):
            try:
                config = self._session.daemon.config
                max_line = config.claude.max_line_bytes
                settings = TailSettings(
                    retry_initial=config.supervision.procfs_retry_initial,
                    retry_bound=config.supervision.kill_wait,
                    claude_max_line=max_line if attachment.durable.kind == "claude" else None,
                    group_bytes=config.supervision.max_chunk,
                )
                await tail(self._session, attachment, settings)
            except Gone:
                pass  # the client went: the run goes on
            finally:
                if self._following.get(run_id) is attachment:
                    del self._following[run_id]
                    self._ended[run_id] = attachment.sent_seq

    async def detach(self, run_id: str) -> int | None:
        """Stop following a run; return the last seq sent (by a follow that is over already,
        its completion sent: that follow's last), or None if it was never followed here."""
        attachment = self._following.get(run_id)
        if attachment is None:
            return self._ended.get(run_id)
        attachment.stop()
        await attachment.done.wait()
        self._session.conn.detach_run(run_id)
        return attachment.sent_seq

    def stop_all(self) -> None:
        self._stopped = True
        for attachment in self._following.values():
            attachment.scope.cancel()

    async def wait_completed(self) -> None:
        """Wait until every followed run's completion is sent (or its tail stopped)."""
        for attachment in list(self._following.values()):
            await attachment.durable.done.wait()
            await attachment.done.wait()
