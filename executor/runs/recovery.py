"""Reading journals at start, and completing a durable run that died with an earlier daemon:
leftovers killed, then Lost.

Journals are read in a worker thread, many per hand-off (a thread hand-off each cost more than
reading one).  A journal without a completion stays open (locked) until it is completed, so a
hand-off ends after the first such journal: recovery never holds more than one descriptor for
them.  A journal that cannot be opened for want of descriptors (EMFILE, ENFILE, ENOMEM) is
tried again with a backoff — the daemon's own runs free theirs as they end — for up to
`STALL_BOUND` seconds without progress; then the journals not read yet are left for the next
start (`durable.recover_incomplete`) rather than reported as unreadable.

Only processes proven to be the run's are killed (supervision/leftovers.py: its marker, its
root by pid and start time, their descendants), and only under the boot the run started in.
/proc that stays unreadable (no file descriptor) is logged, and the run is completed anyway:
a journal is never left without a completion because of it.

A journal whose META cannot be read (journal_scan.py: `meta` None, `head_damage`) is still a
run: its id is its file's name (`run_id_of`).  Without a recorded root, start time or boot,
only the run's marker proves a process is the run's (and descent from one it proved).  So is
a journal that cannot be read at all (its permissions removed, EIO, a FIFO, a directory or a
symbolic link in its place): the run is not known (a later start tries again), but unless a
live daemon holds a lock on that file (/proc/locks says) the processes carrying its marker
are killed all the same (`kill_unopened`): a run no daemon supervises is never left running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from functools import partial

import structlog
import trio

from cc_executor.executor.runs.wire import claude_summary
from cc_executor.protocol.claude import Init, StreamJsonParser
from cc_executor.supervision import Completed, CompletedEvent, Lost, Output, SupervisionConfig
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, JournalError, boot_id
from cc_executor.supervision.journal_codec import DAMAGED, JOURNAL_SUFFIX
from cc_executor.supervision.journal_codec import run_id_of as journal_run_id
from cc_executor.supervision.journal_config import CREATING, held_by_anyone, remove_if_abandoned
from cc_executor.supervision.leftovers import kill_leftovers
from cc_executor.supervision.procfs import EXHAUSTED, ProcfsExhausted
from cc_executor.supervision.threads import in_thread

log = structlog.get_logger()

LOST_REASON = "daemon restarted while the run was live"

SUFFIX = JOURNAL_SUFFIX  # a journal's file is named <run id>SUFFIX (DurableRuns.create)
RECOVER_BATCH = 256  # journals read per worker-thread hand-off at start
STALL_BOUND = 30.0  # seconds without a descriptor to open a journal with before giving up
RETRY_INITIAL, RETRY_MAX = 0.05, 2.0  # the backoff between those attempts

Opened = tuple[str, Journal | Exception | None, float | None]
SCAN_ENTRIES = 256  # entries read for a lost session's id (its first init comes early)
SCAN_LINE_BYTES = 1 << 20  # a longer line is not an init


class _Stall:
    """The backoff between attempts that failed for want of descriptors, bounded in all by
    `STALL_BOUND` seconds without progress."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._delay = RETRY_INITIAL

    def progressed(self) -> None:
        self._since, self._delay = None, RETRY_INITIAL

    async def wait(self, error: OSError) -> bool:
        """Wait before the next attempt; False (and no wait) once the bound has passed."""
        now = trio.current_time()
        if self._since is None:
            self._since = now
            log.warning("durable.descriptors_exhausted", error=str(error))
        elif now - self._since >= STALL_BOUND:
            return False
        await trio.sleep(self._delay)
        self._delay = min(self._delay * 2, RETRY_MAX)
        return True


def _dangling_link(path: str) -> str | None:
    """`path` or the nearest of its parents that is a symbolic link to nothing, if any."""
    while True:
        if os.path.lexists(path) and not os.path.exists(path):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


async def read_journals(
    directory: str,
    suffix: str,
    config: JournalConfig,
    found: Callable[[Opened], Awaitable[None]],
) -> None:
    """Open every journal (`suffix`) in `directory`, in the order of their names, and hand each
    to `found` (see the module docstring: batches, the unfinished ones, running out of
    descriptors).  A directory that cannot be listed, or made when there is none, is logged
    (``durable.state_unreadable``): no run of it is known, new ones are still started."""
    stall = _Stall()
    while True:
        try:
            names = sorted(os.listdir(directory))
            break
        except FileNotFoundError:
            # None yet: made now, so that one that cannot be (a link that leads nowhere, a
            # read-only file system, a parent that takes no directory) is heard of at start,
            # not at the first durable run's -32006.
            dangling = _dangling_link(directory)
            if dangling is not None:
                error = f"{dangling} is a symbolic link to nothing: durable runs cannot start"
                log.error("durable.state_unreadable", directory=directory, error=error)
                return
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except OSError as exc:
                error = f"it cannot be created ({exc.strerror or exc}): durable runs cannot start"
                log.error("durable.state_unreadable", directory=directory, error=error)
            return
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                error = f"it cannot be listed ({exc.strerror or exc}): durable runs cannot start"
                log.error("durable.state_unreadable", directory=directory, error=error)
                return
            if not await stall.wait(exc):
                log.error("durable.recover_incomplete", unread="all", error=str(exc))
                return
    abandoned = [os.path.join(directory, n) for n in names if n.endswith(suffix + CREATING)]
    if abandoned:
        await in_thread(remove_abandoned, abandoned)
    paths = [os.path.join(directory, name) for name in names if name.endswith(suffix)]
    while paths:
        opened, exhausted = await in_thread(open_journals, paths[:RECOVER_BATCH], config)
        if not opened and exhausted is not None:
            if not await stall.wait(exhausted):
                log.error("durable.recover_incomplete", unread=len(paths), error=str(exhausted))
                return
            continue
        stall.progressed()
        paths = paths[len(opened) :]
        for each in opened:
            await found(each)


def remove_abandoned(paths: list[str]) -> None:
    """Remove the ``.creating`` files a daemon that died while creating a journal left
    (supervision/journal_config.py); a file that cannot be checked is logged and left."""
    now = time.time()
    for path in paths:
        try:
            if remove_if_abandoned(path, now):
                log.info("durable.creating_removed", path=path)
        except OSError as exc:
            log.warning("durable.creating_unreadable", path=path, error=str(exc))


def run_id_of(path: str) -> str:
    """The run id a journal's file name says (`create` names it so; run ids are safe): the
    one its records are bound to too."""
    return journal_run_id(path)


def open_journals(paths: list[str], config: JournalConfig) -> tuple[list[Opened], OSError | None]:
    """Journal.open `paths` in order (None: held by a live daemon; an exception: unreadable),
    each with its file's mtime (when a completed run ended), up to and including the first
    unfinished one, or up to one that cannot be opened for want of descriptors (returned
    apart).  Blocking: a worker thread's."""
    opened: list[Opened] = []
    for path in paths:
        try:
            journal = Journal.open(path, config)
        except OSError as exc:
            if exc.errno in EXHAUSTED:
                return opened, exc
            opened.append((path, exc, None))
            continue
        except JournalError as exc:
            opened.append((path, exc, None))
            continue
        try:
            mtime: float | None = os.stat(path).st_mtime
        except OSError:
            mtime = None
        opened.append((path, journal, mtime))
        if journal is not None and journal.completed is None:
            break  # it stays open until completed: one at a time
    return opened, None


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


def _kill_unheld(path: str, run_id: str, config: SupervisionConfig) -> list[int] | None:
    """Kill the run's marked processes unless a lock on its journal shows it supervised (or
    that cannot be told: None).  Blocking: a worker thread's."""
    if held_by_anyone(path) is not False:
        return None
    return kill_leftovers(run_id, None, None, config=config)


async def kill_unopened(path: str, config: SupervisionConfig) -> None:
    """Kill the leftovers of the run of a journal that cannot be read (the module
    docstring): by its marker only, the run id its file's name says."""
    run_id = run_id_of(path)
    try:
        killed = await in_thread(_kill_unheld, path, run_id, config)
    except ProcfsExhausted as exc:
        log.error("run.leftovers_unchecked", run=run_id, error=str(exc))
        return
    if killed:
        log.warning("run.leftovers_killed", run=run_id, killed=killed, why="journal unreadable")
    else:  # none, or a lock on the file (or no /proc/locks) said not to look
        log.info("run.leftovers_checked", run=run_id, looked=killed is not None)


async def complete_lost(journal: Journal, run_id: str, config: SupervisionConfig) -> str | None:
    """Kill what is left of the journal's run, then append a Lost completion and close it.
    Returns a Claude session's id when its notes do not say it (`first_session_id`).

    Without its META (damaged: no pid, start time or boot id) only processes carrying the
    run's marker, with the id its file's name says, and their descendants are killed.
    """
    meta = journal.meta
    killed: list[int] = []
    kill = None
    if meta is None:
        if run_id:
            kill = partial(kill_leftovers, run_id, None, None, config=config)
    elif meta.boot_id == boot_id():
        kill = partial(
            kill_leftovers,
            run_id,
            meta.pgid,
            meta.started_wall,
            root_start_ticks=meta.root_start_ticks,
            config=config,
        )
    if kill is not None:
        try:
            killed = await in_thread(kill)
        except ProcfsExhausted as exc:
            log.error("run.leftovers_unchecked", run=run_id, error=str(exc))
    completed = Completed(
        outcome=Lost(LOST_REASON),
        stdout_bytes=journal.stdout_bytes,
        stderr_bytes=journal.stderr_bytes,
        duration=0.0 if meta is None else max(0.0, time.time() - meta.started_wall),
    )
    seq, cut, head = journal.last_seq + 1, None, journal.head_damage
    if journal.truncated_bytes:  # its tail was cut (torn, or damaged): the events it held
        cut = Gap(seq, f"{DAMAGED}: {journal.truncated_bytes} bytes cut at its end")
    elif head is not None and head.length and not journal.last_seq:  # no record readable
        cut = Gap(seq, f"{DAMAGED}: {head.length} bytes unreadable from its start")
    if cut is not None:
        seq += 1
    # Nothing at start waits for the disk (every lookup waits for recovery): a completion the
    # disk cannot take now is kept in memory (`journal.error` says why); the next start retries.
    journal.unblock()
    await journal.append_completion(CompletedEvent(seq=seq, completed=completed), cut)
    log.warning("run.lost", run=run_id, reason=LOST_REASON, killed=killed, meta=meta is not None)
    summary = claude_summary(None, journal.last_notes, None)
    if summary is None or summary.get("session_id") is not None:
        return None
    try:
        return await in_thread(first_session_id, journal)
    except OSError as exc:  # e.g. EMFILE: the summary then has no session id
        log.warning("claude.session_id_unread", run=run_id, error=str(exc))
        return None
