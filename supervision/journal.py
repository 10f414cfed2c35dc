"""The run journal: a durable run's events in an append-only file of checked records.

Theory of operation
-------------------
A durable run's pump delivers into `Journal.deliver` (the journal is the pump's sink, as the
WebSocket is for other runs).  Every numbered event becomes one record (journal_codec.py).
Records are batched (journal_batch.py): `deliver` queues output, and the batch is written with
one writev(2) when it reaches `batch_bytes`, before any state change or completion, and when
the pump has had nothing more to hand over for `batch_delay` (`flush`, the pump's idle hook).
Readers only ever see whole batches: `committed` is the size up to the last whole record, and
no cursor reads beyond it; a cursor that is caught up takes the last batch from memory.

Crash safety: only the last write can be torn.  `Journal.open` reads the whole file; a torn
tail is cut, damage elsewhere is stepped over and reported, never cut, and a head that cannot be
read leaves `meta` None (`head_damage` says why): the records after it are read (journal_scan.py).

Write faults (ENOSPC, EDQUOT, EIO, a short write): the file is cut back to `committed`, the
fault is kept in `fault` (for ``status``) and announced to every cursor at once (a
`JournalFault` entry), and `error_policy` decides: "block" retries the write with a bounded
backoff, holding the pump (and so the child, through the pipe) until it succeeds or the run
ends (`unblock`); "cancel" stops recording output and wakes `wait_faulted`, whose caller ends
the run.  Unwritable output is dropped; notes and state changes (what clients are told) wait
for the next write.  The completion is always kept in memory (`completed`; cursors of a
finished journal yield it from there if the file lacks it) and is written with the space of a
reserve file made with the journal (``<name>.reserve``), released only for it (and the notes
that fit beside it), so a full disk still records how the run ended.

Quota: output records may fill the file up to `quota_bytes`.  At the quota, policy "block"
makes `deliver` wait until `unblock()` (called when the run is ending), after which output is
not recorded any more; policy "gap" appends one GAP record and drops output from then on.

The live writer holds an exclusive flock on its file: a journal whose lock can be taken
belongs to no live daemon (the lock dies with the process, even on SIGKILL).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

import structlog
import trio

from cc_executor.supervision.events import CompletedEvent, Note, Output, SequencedEvent
from cc_executor.supervision.journal_batch import Batch, encode_entry_parts, index_records
from cc_executor.supervision.journal_codec import (
    MAGIC,
    Entry,
    Gap,
    JournalError,
    Meta,
    Record,
    Removed,
    encode_entry,
    encode_meta,
)
from cc_executor.supervision.journal_config import (
    FULL_ERRNOS,
    JournalConfig,
    boot_id,
    create_locked,
    make_reserve,
)
from cc_executor.supervision.journal_cursor import Cursor, JournalFault, Replayed
from cc_executor.supervision.journal_scan import DamagedRange, HeadDamage, scan_file

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

log = structlog.get_logger()

RESERVE_SUFFIX = ".reserve"
_IOV_MAX = os.sysconf("SC_IOV_MAX")  # the most buffers one writev(2) takes


def _strerror(exc: OSError) -> str:
    return f"{exc.strerror or exc} (errno {exc.errno})" if exc.errno else str(exc)


class Journal:
    """One run's journal file and what is known of it in memory; built by `create` (a new
    live run: `deliver` is its pump's sink) or `open` (an existing file, recovered)."""

    def __init__(self, path: str, meta: Meta | None, config: JournalConfig) -> None:
        self.path = path
        self.meta = meta  # None: its head cannot be read (`head_damage` says why)
        self.config = config
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
        # The last batch written, by offset, with its entries (for a cursor caught up).
        self._recent: dict[int, tuple[Record, Entry]] = {}
        self._appended = trio.Event()
        self._unblocked = trio.Event()
        self._faulted = trio.Event()
        self.finished = True  # no more appends will come

    # -- building ----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str, meta: Meta, config: JournalConfig) -> Journal:
        """A new journal for a live run, locked by this process until `close`.

        Raises:
            OSError: the file or its completion reserve could not be made (a full disk).
        """
        head = MAGIC + encode_meta(meta)
        fd = create_locked(path, head)  # its name appears with its head, already locked
        try:
            make_reserve(path + RESERVE_SUFFIX, config.completion_reserve_bytes)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        journal = cls(path, meta, config)
        journal._fd = fd
        journal.committed = len(head)
        journal.finished = False
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
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            journal = cls(path, None, config)
            scan_file(journal, fd)
        except BaseException:
            os.close(fd)
            raise
        if journal.completed is None:
            os.lseek(fd, journal.committed, os.SEEK_SET)  # appends go after the last record
            journal._fd = fd
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + RESERVE_SUFFIX)  # a crash between completion and close
            os.close(fd)
        return journal

    def _note(self, entry: Entry) -> None:
        if isinstance(entry, Gap):
            self.gap = entry
        elif isinstance(entry, Removed):
            self.removed = entry
        else:
            self.last_seq = max(self.last_seq, entry.seq)
            if isinstance(entry, CompletedEvent):
                self.completed = entry
            elif isinstance(entry, Output) and entry.stream == "stdout":
                self.stdout_bytes += len(entry.data)
            elif isinstance(entry, Output):
                self.stderr_bytes += len(entry.data)
            elif isinstance(entry, Note):
                self.last_notes[entry.name] = entry.data

    # -- writing -------------------------------------------------------------------------

    async def deliver(self, event: SequencedEvent) -> None:
        """The pump's sink: record one event (see the module docstring for quota and faults)."""
        if isinstance(event, CompletedEvent):
            self.completed = event  # in memory whatever the disk says
            self.last_seq = max(self.last_seq, event.seq)
        if isinstance(event, Output):
            if self.gap is not None:
                return
            record = encode_entry_parts(event)
            assert self.meta is not None, "only a live run's journal takes output"
            if self.committed + self._batch.size + sum(map(len, record)) > self.meta.quota_bytes:
                await self.flush()
                await self._quota_reached(event.seq)
                return
            self._queue(record, event)
            if self._batch.size >= self.config.batch_bytes or self._batch.buffers + 2 > _IOV_MAX:
                await self.flush()
            return
        self._queue((encode_entry(event),), event)
        await self.flush()

    async def _quota_reached(self, seq: int) -> None:
        if self.meta is not None and self.meta.quota_policy == "block":
            self.blocked = True
            try:
                await self._unblocked.wait()
            finally:
                self.blocked = False
            reason = "journal quota reached; the run is ending"
        else:
            reason = "journal quota reached"
        gap = Gap(seq, reason)
        self._queue((encode_entry(gap),), gap)
        await self.flush()

    def _queue(self, record: tuple[bytes, ...], entry: Entry) -> None:
        self._batch.add(record, entry)

    def unblock(self) -> None:
        """Stop waiting (for room or a retry): from now on, what cannot be recorded is not."""
        self._unblocked.set()

    async def wait_faulted(self) -> JournalFault:
        """Return the first write fault, once there is one."""
        await self._faulted.wait()
        return self.faults[0] if self.fault_count == len(self.faults) else self.faults[-1]

    async def append_completion(self, event: CompletedEvent, cut: Gap | None = None) -> None:
        """Record a recovered run's completion (after `cut`: the GAP its cut tail is), close."""
        if cut is not None:
            self._queue((encode_entry(cut),), cut)
        await self.deliver(event)
        await self.close()

    async def flush(self) -> None:
        """Write every queued record (the pump's idle hook); faults as the module says."""
        delay = self.config.retry_initial
        while self._batch:
            error = await self._write_batch()
            if error is None:
                if self.fault is not None:
                    log.info("journal.write_recovered", path=self.path, seq=self.last_seq)
                    self.fault = None
                    self._wake()
                return
            self._note_fault(error)
            completed = self._batch.entries[-1]
            ending = isinstance(completed, CompletedEvent)
            if ending and self._release_reserve():  # for the completion and notes beside it
                room = self.config.completion_reserve_bytes - sum(map(len, self._batch.records[-1]))
                self._drop_batch(keep_last=True, keep_notes=True, budget=room)
                continue
            if self.config.error_policy == "cancel" or self._unblocked.is_set():
                self._drop_batch(keep_notes=not ending)  # notes wait for the next write
                return
            self.blocked = True
            try:
                with trio.move_on_after(delay):
                    await self._unblocked.wait()
            finally:
                self.blocked = False
            delay = min(delay * 2, self.config.retry_max)

    async def _write_batch(self) -> OSError | None:
        assert self._fd is not None, "journal is not open for writing"
        batch, size = self._batch, self._batch.size
        try:
            written = os.writev(self._fd, batch.flat())
        except OSError as exc:
            return exc
        if written != size:  # a regular file only writes short when the disk is full
            os.ftruncate(self._fd, self.committed)
            short = f"{os.strerror(errno.ENOSPC)}: short write, {written} of {size} bytes"
            return OSError(errno.ENOSPC, short)
        entries = batch.entries
        self._recent = index_records(self.committed, batch.records, entries)
        self._batch = Batch()
        self.committed += size
        for entry in entries:
            self._note(entry)
        if self.config.fsync == "always" or (
            self.config.fsync == "completion" and not isinstance(entries[-1], Output)
        ):
            try:
                await trio.to_thread.run_sync(os.fsync, self._fd)
            except OSError as exc:
                # Written, but maybe not durable (EIO): said in the log and in `status`.
                self._note_fault(exc)
        self._wake()  # readers see a batch only once the fsync policy holds for it
        return None

    def recent(self, offset: int) -> tuple[Record, Entry] | None:
        """The record at `offset` (payload not kept) and its entry, if in the last batch."""
        return self._recent.get(offset)

    def _note_fault(self, error: OSError) -> None:
        seq = next(
            (e.seq for e in self._batch.entries if not isinstance(e, Gap | Removed)),
            self.last_seq + 1,
        )
        reason = f"journal write failed: {_strerror(error)}"
        if self.fault is None:
            self.fault_count += 1
            self.fault = JournalFault(seq, reason, self.config.error_policy)
            self.faults = [*self.faults[-(self.config.faults_kept - 1) :], self.fault]
            log.error(
                "journal.write_failed",
                path=self.path,
                seq=seq,
                error=_strerror(error),
                full=error.errno in FULL_ERRNOS,
                policy=self.config.error_policy,
            )
            self._faulted.set()
            self._wake()

    def _release_reserve(self) -> bool:
        """Free the completion's reserved space; False if it was used already."""
        try:
            os.unlink(self.path + RESERVE_SUFFIX)
        except OSError:
            return False
        return True

    def _drop_batch(
        self, *, keep_last: bool = False, keep_notes: bool = False, budget: int | None = None
    ) -> None:
        """Give up on the queued output (the rest too unless `keep_notes`; see Batch.drop)."""
        assert self.fault is not None
        dropped = self._batch.drop(keep_last=keep_last, keep_notes=keep_notes, budget=budget)
        first = next((e for e in dropped if isinstance(e, Output)), None)
        if first is not None and self.gap is None:
            self.gap = Gap(first.seq, f"not recorded: {self.fault.reason}")
        if dropped:
            log.warning("journal.records_dropped", path=self.path, records=len(dropped))

    async def close(self) -> None:
        """No more appends: write what is queued, release the file and wake every reader."""
        if self._fd is not None:
            self.unblock()
            try:
                await self.flush()
                if self.config.fsync != "never":
                    with contextlib.suppress(OSError):
                        await trio.to_thread.run_sync(os.fsync, self._fd)
            finally:
                fd, self._fd = self._fd, None
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path + RESERVE_SUFFIX)
        self._recent = {}  # a finished file may be compacted: its offsets are the file's only
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        self._appended.set()
        self._appended = trio.Event()

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
