"""The run journal: a durable run's events in an append-only file of checked records.

Theory of operation
-------------------
A durable run's pump delivers into `Journal.deliver` (the journal is the pump's sink, as the
WebSocket is for other runs).  Every numbered event becomes one record (journal_codec.py).
Records are batched and written in batches, a full one behind the pump in a worker thread;
quota and write faults are journal_write.py's.  Readers only ever see whole batches:
`committed` is the size up to the last whole record, and no cursor reads beyond it; a cursor
that is caught up takes the last batch from memory.

Crash safety: only the last write can be torn.  `Journal.open` reads the whole file; a torn
tail is cut, damage elsewhere is stepped over and reported, never cut, and a head that cannot be
read leaves `meta` None (`head_damage` says why): the records after it are read (journal_scan.py).
The completion is always kept in memory (`completed`; cursors of a finished journal yield it
from there if the file lacks it).

The live writer holds an exclusive flock on its file: a journal whose lock can be taken
belongs to no live daemon (the lock dies with the process, even on SIGKILL).

A journal that cannot be opened for writing (a read-only file system, a read-only file) is
opened for reading and read all the same (`read_only` says why): its run is known, and what
would be appended to it (a lost run's completion) fails like a write to a full disk, kept in
memory only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

import structlog
import trio

from cc_executor.supervision.events import CompletedEvent
from cc_executor.supervision.files import NotRegularFile, open_regular
from cc_executor.supervision.journal_batch import Batch, Behind
from cc_executor.supervision.journal_codec import (
    MAGIC,
    Entry,
    Gap,
    JournalError,
    Meta,
    Record,
    Removed,
    encode_meta,
    run_id_of,
    seed_of,
)
from cc_executor.supervision.journal_config import (
    JournalConfig,
    boot_id,
    create_locked,
    make_reserve,
)
from cc_executor.supervision.journal_cursor import Cursor, JournalFault, Replayed
from cc_executor.supervision.journal_scan import DamagedRange, HeadDamage, scan_file
from cc_executor.supervision.journal_write import RESERVE_SUFFIX, JournalWriter
from cc_executor.supervision.threads import in_thread

log = structlog.get_logger()

# Why a journal may open for reading only: a read-only file system or a read-only file.
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def remove_reserve(path: str) -> None:
    """Remove the completion reserve of the journal at `path` if it is there.  One that cannot be
    removed (a directory put in its place) is logged and left: it never makes the journal
    unreadable."""
    try:
        os.unlink(path + RESERVE_SUFFIX)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("journal.reserve_not_removed", path=path + RESERVE_SUFFIX, error=exc.strerror)


__all__ = [
    "Cursor",
    "DamagedRange",
    "Gap",
    "HeadDamage",
    "Journal",
    "JournalConfig",
    "JournalError",
    "JournalFault",
    "Meta",
    "Removed",
    "Replayed",
    "boot_id",
]


class Journal(JournalWriter):
    """One run's journal file and what is known of it in memory; built by `create` (a new
    live run: `deliver` is its pump's sink) or `open` (an existing file, recovered)."""

    def __init__(self, path: str, meta: Meta | None, config: JournalConfig) -> None:
        self.path = path
        self.meta = meta  # None: its head cannot be read (`head_damage` says why)
        self.config = config
        # What binds its records (journal_codec.py): the seed of every file written for it
        # (created, compacted) and the seeds its file's records are checked with, the first
        # of which records appended to it are written with (UNBOUND in a v1 file).
        self.seed = seed_of(run_id_of(path))
        self.seeds: tuple[int, ...] = (self.seed,)
        self.committed = 0  # bytes up to the end of the last whole record
        self.last_seq = 0
        self.stdout_bytes = 0  # as recorded (output after a gap is not counted)
        self.stderr_bytes = 0
        self.completed: CompletedEvent | None = None  # in memory even if it was not written
        self.gap: Gap | None = None
        self.removed: Removed | None = None
        self.last_notes: dict[str, bytes] = {}  # the latest body of each note name
        self.blocked = False  # deliver is waiting: for room (quota) or to retry a failed write
        self.truncated_bytes = 0  # torn tail cut off by open()
        self.damaged: list[DamagedRange] = []
        self.kept_aside: str | None = None  # where open() kept a damaged original
        self.head_damage: HeadDamage | None = None  # why `meta` is None
        self.fault: JournalFault | None = None  # the write fault not resolved yet
        self.fault_count = 0  # fault episodes so far (cursors announce each once)
        self.faults: list[JournalFault] = []  # the last `faults_kept` of them, oldest first
        self._fd: int | None = None  # the writer's descriptor, while live
        self._batch = Batch()
        self._behind = Behind(self._written_behind)
        self._failed: tuple[Batch, OSError] | None = None  # a write behind that failed
        # The last batch written, by offset, with its entries (for a cursor caught up).
        self._recent: dict[int, tuple[Record, Entry]] = {}
        self._appended = trio.Event()
        self._unblocked = trio.Event()  # recording gives up waiting (quota and write faults)
        self._ended = trio.Event()  # the run's processes are gone: the quota's wait is over
        self._faulted = trio.Event()
        self.finished = True  # no more appends will come
        # Every record of it was written by this process (`create`): what it did not record,
        # it knows (`gap`, `fault_count`); a journal opened from disk cannot tell.
        self.written_here = False
        # Why the file could only be opened for reading (EROFS, EACCES), if so: every write
        # to it fails with this error (journal_write.py), and its tail is never cut.
        self.read_only: OSError | None = None

    # -- building ----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str, meta: Meta, config: JournalConfig) -> Journal:
        """A new journal for a live run, locked by this process until `close`.

        Raises:
            OSError: the file or its completion reserve could not be made (a full disk).
        """
        journal = cls(path, meta, config)
        head = MAGIC + encode_meta(meta, journal.seed)
        fd = create_locked(path, head)  # its name appears with its head, already locked
        try:
            make_reserve(path + RESERVE_SUFFIX, config.completion_reserve_bytes)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        journal._fd = fd
        journal.committed = len(head)
        journal.finished = False
        journal.written_here = True
        return journal

    @classmethod
    def open(cls, path: str, config: JournalConfig) -> Journal | None:
        """Read an existing journal (damage: the module docstring; a head that cannot be read
        leaves `meta` None); None if a live daemon holds it.  Blocking: a worker thread's.

        A journal without a completion is returned still locked by this process (`finished`
        False, no writes accepted but `append_completion`) so nobody else recovers it too.


        Raises:
            JournalError: the path is not a regular file.
        """
        # Only a regular file, never through a symlink: a headless one is still appended to.
        read_only: OSError | None = None
        try:
            fd = open_regular(path, os.O_RDWR)
        except NotRegularFile as exc:
            raise JournalError(f"{path}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno not in READ_ONLY_ERRNOS:
                raise
            # A read-only file system (remounted so after errors, a volume mounted so) or
            # file: the run is still read, and a lost one's leftovers still killed; what
            # cannot be appended (its completion) is kept in memory, as on a full disk.
            fd = open_regular(path, os.O_RDONLY)
            read_only = exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            journal = cls(path, None, config)
            journal.read_only = read_only
            scan_file(journal, fd)
        except BaseException:
            os.close(fd)
            raise
        if journal.completed is None:
            os.lseek(fd, journal.committed, os.SEEK_SET)  # appends go after the last record
            journal._fd = fd
        else:
            if read_only is None:  # (a read-only one cannot be removed, nor was it made)
                remove_reserve(path)  # a crash between completion and close
            os.close(fd)
        return journal

    # -- writing (the rest is journal_write.py) ------------------------------------------

    async def append_completion(self, event: CompletedEvent, cut: Gap | None = None) -> None:
        """Record a recovered run's completion (after `cut`: the GAP its cut tail is), close."""
        if cut is not None:
            self._batch.add(self._encode(cut), cut)
        await self.deliver(event)
        await self.close()

    def recent(self, offset: int) -> tuple[Record, Entry] | None:
        """The record at `offset` (payload not kept) and its entry, if in the last batch."""
        return self._recent.get(offset)

    async def close(self) -> None:
        """No more appends: write what is queued, release the file and wake every reader."""
        if self._fd is not None:
            self.unblock()
            try:
                await self.flush()
                if self.config.fsync != "never":
                    with contextlib.suppress(OSError):
                        await in_thread(os.fsync, self._fd)
            finally:
                fd, self._fd = self._fd, None
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path + RESERVE_SUFFIX)
        self._recent = {}  # a finished file may be compacted: its offsets are the file's only
        self.finished = True
        self._wake()

    async def wait_appended(self, seen: int, faults_seen: int) -> None:
        """Return once there are more than `seen` bytes, a fault after `faults_seen`, or the end."""
        while self.committed <= seen and not self.finished and self.fault_count <= faults_seen:
            await self._appended.wait()

    # -- reading -------------------------------------------------------------------------

    def cursor(self, from_seq: int) -> Cursor:
        """A reader of every entry after `from_seq` (the caller closes it).

        Raises:
            OSError: the file cannot be opened (e.g. EMFILE).
        """
        return Cursor(self, from_seq)

    @property
    def size(self) -> int:
        return self.committed
