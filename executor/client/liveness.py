"""Saying so when a daemon stops answering while ccx waits on it (stopped with SIGSTOP, stuck).

A silent run and a long reply (a CANCEL waits out the daemon's term grace) look the same from
here as a daemon that is not running any more: after a quiet interval ccx pings it, and when
two pings in a row go unanswered it says so, once, and again once the daemon answers. The
daemon's reader answers pings whatever its session is doing (transport/websocket.py), so an
unanswered ping is the daemon's silence — unless ccx itself is behind (writing out an event,
so its own reader stops reading pongs) or was stopped (Ctrl-Z: the time it was stopped makes
the first ping late), which `progress` and the second ping rule out.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from cc_executor.executor.client.config import CommandLineConfig
from cc_executor.executor.client.connection import Connection
from cc_executor.executor.client.errors import ConnectionLost
from cc_executor.executor.client.terminal import Terminal

# (events taken so far, whether ccx is waiting on the daemon rather than busy itself).
Progress = Callable[[], tuple[int, bool]]


def always_waiting() -> tuple[int, bool]:
    """The progress of a request's wait for its reply: nothing arrives before it."""
    return 0, True


async def _answered(conn: Connection, within: float, progress: Progress, then: object) -> bool:
    """Whether the daemon answered a ping within `within` s, or anything moved meanwhile."""
    with trio.move_on_after(within):
        await conn.ping()
        return True
    return progress() != then


async def watch_daemon(
    conn: Connection,
    term: Terminal,
    config: CommandLineConfig,
    waiting_for: str,
    progress: Progress = always_waiting,
) -> None:
    """Run beside a wait on the daemon (cancel it when the wait is over)."""
    within = config.daemon_answer_timeout
    while True:
        then = progress()
        await trio.sleep(config.daemon_check_interval)
        now = progress()
        if now != then or not now[1]:
            continue  # events flow, or we are the ones behind
        try:
            if await _answered(conn, within, progress, now) or await _answered(
                conn, within, progress, now
            ):
                continue
            term.message(
                f"ccx: the daemon at {conn.url} has not answered for {2 * within:g} s — it may "
                f"be stopped (kill -CONT resumes it) or too busy; ccx waits for {waiting_for}"
            )
            await conn.ping()
        except ConnectionLost:
            continue  # the wait says so, or it reconnects
        term.message(f"ccx: the daemon at {conn.url} answers again")
