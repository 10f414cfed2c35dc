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

from cc_executor.executor.runs.wire import claude_summary
from cc_executor.protocol.claude import Init, StreamJsonParser
from cc_executor.supervision import Completed, CompletedEvent, Lost, Output, SupervisionConfig
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, JournalError, boot_id
from cc_executor.supervision.journal_codec import DAMAGED
from cc_executor.supervision.leftovers import kill_leftovers
from cc_executor.supervision.procfs import ProcfsExhausted

log = structlog.get_logger()

LOST_REASON = "daemon restarted while the run was live"

RECOVER_BATCH = 256  # journals read per worker-thread hand-off at start
SCAN_ENTRIES = 256  # entries read for a lost session's id (its first init comes early)
SCAN_LINE_BYTES = 1 << 20  # a longer line is not an init


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


def first_session_id(journal: Journal) -> str | None:
    """The Claude session id in the first ``init`` line of a journal's stdout, within its
    first `SCAN_ENTRIES` entries (blocking: a worker thread's).  For a session whose journal
    has no turn's end to say it (it died in its first turn, or that record was damaged)."""
    parser = StreamJsonParser(SCAN_LINE_BYTES)
    with journal.cursor(0) as cursor:
        for _ in range(SCAN_ENTRIES):
            entry = cursor.read_nowait()
            if entry is None:
                return None
            if isinstance(entry, Output) and entry.stream == "stdout":
                for event in parser.feed(entry.data):
                    if isinstance(event, Init) and event.session_id is not None:
                        return event.session_id
    return None


async def complete_lost(journal: Journal, config: SupervisionConfig) -> str | None:
    """Kill what is left of the journal's run, then append a Lost completion and close it.
    Returns a Claude session's id when its notes do not say it (`first_session_id`)."""
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
    seq, cut = journal.last_seq + 1, None
    if journal.truncated_bytes:  # its tail was cut (torn, or damaged): the events it held
        cut = Gap(seq, f"{DAMAGED}: {journal.truncated_bytes} bytes cut at its end")
        seq += 1
    await journal.append_completion(CompletedEvent(seq=seq, completed=completed), cut)
    log.warning("run.lost", run=meta.run_id, reason=LOST_REASON, killed=killed)
    summary = claude_summary(None, journal.last_notes, None)
    if summary is None or summary.get("session_id") is not None:
        return None
    try:
        return await trio.to_thread.run_sync(first_session_id, journal)
    except OSError as exc:  # e.g. EMFILE: the summary then has no session id
        log.warning("claude.session_id_unread", run=meta.run_id, error=str(exc))
        return None
