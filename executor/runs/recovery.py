"""Reading journals at start, and completing a durable run that died with an earlier daemon:
leftovers killed, then Lost.

Only processes proven to be the run's are killed (supervision/leftovers.py: its marker, its
root by pid and start time, their descendants), and only under the boot the run started in.
/proc that stays unreadable (no file descriptor) is logged, and the run is completed anyway:
a journal is never left without a completion because of it.
"""

from __future__ import annotations

import os
import time
from functools import partial

import structlog
import trio

from cc_executor.supervision import Completed, CompletedEvent, Lost, SupervisionConfig
from cc_executor.supervision.journal import Journal, JournalConfig, JournalError, boot_id
from cc_executor.supervision.leftovers import kill_leftovers
from cc_executor.supervision.procfs import ProcfsExhausted

log = structlog.get_logger()

LOST_REASON = "daemon restarted while the run was live"

RECOVER_BATCH = 256  # journals read per worker-thread hand-off at start


def open_journals(
    paths: list[str], config: JournalConfig
) -> list[tuple[str, Journal | Exception | None, float | None]]:
    """Journal.open each of `paths` (None: held by a live daemon; an exception: unreadable),
    with its file's mtime (when a completed run ended).  Blocking: a worker thread's."""
    opened: list[tuple[str, Journal | Exception | None, float | None]] = []
    for path in paths:
        try:
            journal = Journal.open(path, config)
        except (JournalError, OSError) as exc:
            opened.append((path, exc, None))
            continue
        try:
            mtime: float | None = os.stat(path).st_mtime
        except OSError:
            mtime = None
        opened.append((path, journal, mtime))
    return opened


async def complete_lost(journal: Journal, config: SupervisionConfig) -> None:
    """Kill what is left of the journal's run, then append a Lost completion and close it."""
    meta = journal.meta
    killed: list[int] = []
    if meta.boot_id == boot_id():
        try:
            killed = await trio.to_thread.run_sync(
                partial(
                    kill_leftovers,
                    meta.run_id,
                    meta.pgid,
                    meta.started_wall,
                    root_start_ticks=meta.root_start_ticks,
                    config=config,
                )
            )
        except ProcfsExhausted as exc:
            log.error("run.leftovers_unchecked", run=meta.run_id, error=str(exc))
    completed = Completed(
        outcome=Lost(LOST_REASON),
        stdout_bytes=journal.stdout_bytes,
        stderr_bytes=journal.stderr_bytes,
        duration=max(0.0, time.time() - meta.started_wall),
    )
    await journal.append_completion(CompletedEvent(seq=journal.last_seq + 1, completed=completed))
    log.warning("run.lost", run=meta.run_id, reason=LOST_REASON, killed=killed)
