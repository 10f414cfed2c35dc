"""Progress for an MCP call that waits for its run: the latest output, heartbeats when quiet.

Theory of operation: when a request carried ``_meta.progressToken``, a reporter task sends
``notifications/progress`` while the call waits: the latest output as ``message``, at most one
per ``progress_interval``, and a heartbeat every ``heartbeat_interval`` while the run is quiet
(MCP clients drop calls after ~60 s without progress).  Before the response goes out the
reporter is stopped cooperatively (never in the middle of a send), and McpConnection refuses
any progress after the response anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from cc_executor.executor.mcp.runs import McpRun
from cc_executor.protocol.mcp import ProgressToken

if TYPE_CHECKING:
    from cc_executor.executor.mcp.session import McpSession
    from cc_executor.executor.mcp.turnwait import TurnWait


class ProgressReporter:
    """Progress for one waiting call: latest output, rate-limited, heartbeats when quiet.

    With `turn`, a call waiting for a Claude session's turn: the latest of that turn's text
    (the assistant's words as they are written) instead of the run's raw output.
    """

    def __init__(
        self,
        session: McpSession,
        request_id: int | str,
        token: ProgressToken,
        run: McpRun,
        turn: TurnWait | None = None,
    ):
        self._session = session
        self._id = request_id
        self._token = token
        self._run = run
        self._turn = turn
        self._config = session.daemon.config.mcp
        self._started = trio.current_time()
        self._stopping = False
        self._wake: trio.CancelScope | None = None
        self.done = trio.Event()
        self.sent = 0

    async def run(self) -> None:
        try:
            await self._send(f"started run {self._run.run_id}")
            last_sent = trio.current_time()
            seen = self._run.log.last_seq
            text_seen = 0 if self._turn is None else self._turn.view.text_changes
            while not self.stopped():
                with trio.CancelScope() as wake:
                    self._wake = wake
                    with trio.move_on_at(last_sent + self._config.heartbeat_interval):
                        await self._run.log.wait_changed(seen)
                    await trio.sleep_until(last_sent + self._config.progress_interval)
                self._wake = None
                if self.stopped():
                    break
                log_ = self._run.log
                limit = self._config.progress_message_bytes
                turn_text = None if self._turn is None else self._turn.view.text_changes
                if turn_text is not None and turn_text != text_seen:
                    assert self._turn is not None
                    message = self._turn.progress(limit)  # the turn's text, when it grew
                    text_seen = turn_text
                elif self._turn is None and log_.last_seq > seen and log_.latest:
                    message = log_.latest[-limit:].decode("utf-8", errors="replace")
                else:
                    elapsed = trio.current_time() - self._started
                    state = "paused" if log_.paused else self._run.run.state.value
                    message = f"run {self._run.run_id} {state}, {elapsed:.0f} s"
                seen = log_.last_seq
                await self._send(message)
                last_sent = trio.current_time()
        finally:
            self.done.set()

    async def _send(self, message: str) -> None:
        conn = self._session.conn
        if conn.progress_token(self._id) != self._token:
            self._stopping = True  # answered or abandoned: the token is dead
            return
        elapsed = round(trio.current_time() - self._started, 3)
        text = conn.progress(self._token, conn.next_progress(self._token, elapsed), message)
        self.sent += 1
        await self._session.send(text)

    def stopped(self) -> bool:
        """Asked to stop (a method: the flag changes while we wait)."""
        return self._stopping

    async def stop(self) -> None:
        """Stop after the notification being sent, if any; return once stopped."""
        self._stopping = True
        if self._wake is not None:
            self._wake.cancel()
        await self.done.wait()
