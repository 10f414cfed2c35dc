"""How a journal writes: its batches, the write behind the pump, quota and write faults.

Theory of operation
-------------------
`deliver` queues output (journal_batch.py), and the batch is written with one writev(2) when
it reaches `batch_bytes`, before any state change or completion, and when the pump has had
nothing more to hand over for `batch_delay` (`flush`, the pump's idle hook).  A full batch of
at least THREAD_BYTES is written *behind* the pump: framed (CRCs) and written in a worker
thread while the pump goes on queuing the next one, and committed (readers woken) from the
event loop the moment the write is over, so recording costs the event loop little more than
queuing and attached connections are served meanwhile.  At most one write is behind: the next
full batch, and every flush, wait for it (never cancelled: a write is not cut short).  So a
live journal holds at most two batches of output: the one being written and the one filling.
One task writes, the pump; readers only ever see whole, committed batches.

Write faults (ENOSPC, EDQUOT, EIO, a short write): what a write got into the file stays
there, and the next write of that batch goes on where it stopped (journal_batch.py); the
whole records it got in are committed at once, so no reader is ever told that an event the
file holds was not recorded.  The fault is kept in `fault` (for ``status``) and announced to
every cursor at once (a `JournalFault` entry), and `error_policy` decides: "block" retries
the write with a bounded backoff, holding the pump (and so the child, through the pipe) until
it succeeds or recording gives up (`unblock`: a CANCEL, the daemon stopping, recovery, close
— not the run's processes ending by themselves: `run_ended` ends only the quota's wait);
"cancel" stops recording output and wakes `wait_faulted`, whose caller ends the run.  Only
when recording gives up is output dropped (the part of a record written is cut off first):
notes and state changes (what clients are told) wait for the next write.  A write behind that
fails is dealt with by the next flush as if it had just failed there, before the batch queued
since (whose output a gap then drops too, if the policy gives up).

The completion is always kept in memory (`completed`), and is written with the space of a
reserve file made with the journal (``<name>.reserve``), released only for the batch that ends
with it.  While the disk cannot take that batch, the reserve is released for it only if the
space it frees, with what the disk has free, takes the rest of the batch; otherwise the batch
waits like any other (policy "block"), and once recording gives up its output is dropped and
the reserve takes the completion and the notes that fit beside it, so a full disk still
records how the run ended.

Quota: output records may fill the file up to `quota_bytes`.  At the quota, policy "block"
makes `deliver` wait until `run_ended()` (the run's processes are gone) or `unblock()`, after
which output is not recorded any more; policy "gap" appends one GAP record and drops output
from then on.
"""

from __future__ import annotations

import errno
import os
import stat

import structlog
import trio

from cc_executor.supervision.events import CompletedEvent, Note, Output, SequencedEvent
from cc_executor.supervision.journal_batch import (
    THREAD_BYTES,
    Batch,
    Behind,
    OutputRecord,
    index_records,
    write,
)
from cc_executor.supervision.journal_codec import Entry, Gap, Meta, Record, Removed, encode_entry
from cc_executor.supervision.journal_config import FULL_ERRNOS, JournalConfig
from cc_executor.supervision.journal_cursor import JournalFault
from cc_executor.supervision.threads import in_thread

log = structlog.get_logger()

RESERVE_SUFFIX = ".reserve"


def _strerror(exc: OSError) -> str:
    return f"{exc.strerror or exc} (errno {exc.errno})" if exc.errno else str(exc)


def _short(batch: Batch) -> OSError | None:
    """The error of a write that left part of `batch` unwritten (None: it is all written).
    A regular file writes short only when the disk is full."""
    if batch.written == batch.size:
        return None
    short = f"{os.strerror(errno.ENOSPC)}: short write, {batch.written} of {batch.size} bytes"
    return OSError(errno.ENOSPC, short)


class JournalWriter:
    """The writing half of a `Journal` (journal.py), whose state it shares."""

    path: str
    meta: Meta | None  # None: its head cannot be read (then it takes no output)
    config: JournalConfig
    seed: int
    seeds: tuple[int, ...]
    committed: int
    last_seq: int
    stdout_bytes: int
    stderr_bytes: int
    completed: CompletedEvent | None
    gap: Gap | None
    removed: Removed | None
    last_notes: dict[str, bytes]
    blocked: bool
    fault: JournalFault | None
    fault_count: int
    faults: list[JournalFault]
    read_only: OSError | None
    _fd: int | None
    _batch: Batch
    _behind: Behind
    _failed: tuple[Batch, OSError] | None
    _recent: dict[int, tuple[Record, Entry]]
    _appended: trio.Event
    _unblocked: trio.Event
    _ended: trio.Event
    _faulted: trio.Event

    async def deliver(self, event: SequencedEvent) -> None:
        """The pump's sink: record one event (see the module docstring for quota and faults)."""
        if isinstance(event, CompletedEvent):
            self.completed = event  # in memory whatever the disk says
            self.last_seq = max(self.last_seq, event.seq)
        if isinstance(event, Output):
            if self.gap is not None:
                return
            record = OutputRecord.of(event, self.seeds[0])
            assert self.meta is not None, "only a live run's journal takes output"
            held = self.committed + self._behind.size + self._batch.size
            if held + len(record) > self.meta.quota_bytes:
                await self.flush()
                await self._quota_reached(event.seq)
                return
            self._batch.add(record, event)
            if self._batch.full(self.config.batch_bytes):
                await self._write_behind()
            return
        self._batch.add(self._encode(event), event)
        await self.flush()

    def _encode(self, entry: Entry) -> bytes:
        """The record of `entry` in this journal's file: bound as its records are (a record
        appended to a v1 file is a v1 record, so the file reads as one version throughout)."""
        return encode_entry(entry, self.seeds[0])

    async def _quota_reached(self, seq: int) -> None:
        if self.meta is not None and self.meta.quota_policy == "block":
            self.blocked = True
            try:
                await self._ended.wait()
            finally:
                self.blocked = False
            reason = "journal quota reached; the run is ending"
        else:
            reason = "journal quota reached"
        gap = Gap(seq, reason)
        self._batch.add(self._encode(gap), gap)
        await self.flush()

    @property
    def holding(self) -> bool:
        """Whether recording holds the run now: waiting for room under the quota, or with a
        write fault not resolved yet under error policy "block" — between retries too, and
        before the first one — until `unblock`.  A state change queued meanwhile waits as
        long.  This is what clients are told (``journal.blocked``); `blocked` is only whether
        `deliver` is inside a wait this instant."""
        return self.blocked or (
            self.fault is not None
            and self.config.error_policy == "block"
            and not self._unblocked.is_set()
        )

    def unblock(self) -> None:
        """Stop waiting (for room or a retry): from now on, what cannot be recorded is not."""
        self._unblocked.set()
        self._ended.set()

    def run_ended(self) -> None:
        """The run's processes are gone: stop waiting for room under the quota (the output
        beyond it is a gap).  A write fault is still retried under policy "block": what the
        run wrote and how it ended are recorded once the disk takes them (or `unblock`)."""
        self._ended.set()

    async def wait_faulted(self) -> JournalFault:
        """Return the first write fault, once there is one."""
        await self._faulted.wait()
        return self.faults[0] if self.fault_count == len(self.faults) else self.faults[-1]

    async def _write_behind(self) -> None:
        """Write the full batch, in a worker thread while the pump goes on if it is big, needs
        no fsync and no fault is pending (else as `flush`); the one before it is over first."""
        await self._behind.wait()
        batch = self._batch
        if (
            self._failed is None
            and self.fault is None
            and batch.size >= THREAD_BYTES
            and self.config.fsync != "always"
        ):
            assert self._fd is not None, "journal is not open for writing"
            self._batch = Batch()
            self._behind.start(self._fd, batch)
        else:
            await self.flush()

    def _written_behind(self, batch: Batch, written: int | OSError) -> None:
        """A write behind is over (in the event loop): commit it, or announce its fault and
        keep it for the next flush (what was queued since waits until it is dealt with)."""
        if isinstance(written, OSError):
            error: OSError | None = written
        else:
            batch.written += written
            error = _short(batch)
        if error is None:
            self._commit(batch)
            self._wake()
        else:
            self._note_fault(error, batch)
            self._failed = (batch, error)

    async def flush(self) -> None:
        """Write every queued record (the pump's idle hook); faults as the module says."""
        await self._behind.wait()
        if self._failed is not None:  # as if that write had just failed: retried, or dropped
            (failed, error), self._failed = self._failed, None
            later, self._batch = self._batch, failed
            await self._commit_written()  # the whole records it got into the file
            await self._write_all(error if self._batch else None)
            if self.gap is not None:
                later.drop(keep_last=False, keep_notes=True)  # output after a gap is not kept
            for record, entry in zip(later.records, later.entries, strict=True):
                self._batch.add(record, entry)
        await self._write_all(None)

    async def _write_all(self, error: OSError | None) -> None:
        """Write the queued records (`error`: their last write failed already)."""
        delay = self.config.retry_initial
        last_try = False  # the output of a completion's batch is given up: once more without it
        while self._batch:
            if error is None:
                error = await self._write_batch()
            if error is None:
                if self.fault is not None:
                    log.info("journal.write_recovered", path=self.path, seq=self.last_seq)
                    self.fault = None
                    self._wake()
                return
            self._note_fault(error)
            error = None
            ending = isinstance(self._batch.entries[-1], CompletedEvent)
            if ending and not last_try and self._reserve_takes_the_rest():
                continue  # at once, into the space the reserve freed
            if self.config.error_policy == "cancel" or self._unblocked.is_set():
                if ending and not last_try:
                    # Recording gives up the output: the reserve takes the completion and
                    # the notes that fit beside it.
                    self._release_reserve()
                    room = self.config.completion_reserve_bytes - len(self._batch.records[-1])
                    self._drop_batch(keep_last=True, keep_notes=True, budget=room)
                    last_try = True
                    continue
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
        """Write what of the queued batch is not in the file yet; commit what is whole."""
        assert self._fd is not None, "journal is not open for writing"
        if self.read_only is not None:  # a read-only file system: every write fails so
            return self.read_only
        batch = self._batch
        try:
            written = await write(self._fd, batch)  # a big batch in a worker thread
        except OSError as exc:
            return exc
        assert self._batch is batch, "one task writes: the pump"
        batch.written += written
        short = _short(batch)
        await self._commit_written()
        return short

    async def _commit_written(self) -> None:
        """Commit the records of the queued batch that are whole in the file, once the fsync
        policy holds for them (`_batch` keeps the rest, and the bytes written of it)."""
        done = self._batch.take_written()
        if not done:
            return
        self._commit(done)
        if self.config.fsync == "always" or (
            self.config.fsync == "completion" and not isinstance(done.entries[-1], Output)
        ):
            assert self._fd is not None
            try:
                await in_thread(os.fsync, self._fd)
            except OSError as exc:
                # Written, but maybe not durable (EIO): said in the log and in `status`.
                self._note_fault(exc)
        self._wake()  # readers see a batch only once the fsync policy holds for it

    def _cut_written(self) -> None:
        """Cut off the part of the queued batch's first record that is in the file (it is
        given up, or written again whole later)."""
        if not self._batch.written:
            return
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self.committed)
            os.lseek(self._fd, self.committed, os.SEEK_SET)  # a descriptor without O_APPEND
        except OSError as exc:
            # The bytes stay: they read as damage (stepped over), and the file goes on after.
            log.warning("journal.cut_failed", path=self.path, error=_strerror(exc))
            self.committed += self._batch.written
        self._batch.written = 0

    def _reserve_takes_the_rest(self) -> bool:
        """Release the completion's reserve if the space it frees, with what the disk has
        free, takes the rest of the queued batch (which ends with the completion)."""
        assert self._fd is not None
        reserve = self.path + RESERVE_SUFFIX
        try:
            held = os.lstat(reserve)
            disk = os.fstatvfs(self._fd)
        except OSError:
            return False
        if not stat.S_ISREG(held.st_mode):
            return False
        block = max(disk.f_frsize, 512)
        free = disk.f_bavail * disk.f_frsize + held.st_blocks * 512
        rest = self._batch.size - self._batch.written
        # Room for its blocks, with a few more for the file's metadata and rounding.
        if -(-rest // block) * block + 4 * block > free:
            return False
        return self._release_reserve()

    def _commit(self, batch: Batch) -> None:
        """`batch` is written: account for it (readers see it once woken)."""
        self._recent = index_records(self.committed, batch.records, batch.entries)
        self.committed += batch.size
        for entry in batch.entries:
            self._note(entry)

    def _note_fault(self, error: OSError, batch: Batch | None = None) -> None:
        """A write of `batch` (the one queued unless given) failed: a fault, unless one is."""
        entries = (self._batch if batch is None else batch).unwritten()
        seq = next((e.seq for e in entries if not isinstance(e, Gap | Removed)), self.last_seq + 1)
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
        self._cut_written()
        dropped = self._batch.drop(keep_last=keep_last, keep_notes=keep_notes, budget=budget)
        first = next((e for e in dropped if isinstance(e, Output)), None)
        if first is not None and self.gap is None:
            self.gap = Gap(first.seq, f"not recorded: {self.fault.reason}")
        if dropped:
            log.warning("journal.records_dropped", path=self.path, records=len(dropped))

    def _note(self, entry: Entry) -> None:
        if isinstance(entry, Gap):
            self.gap = entry
        elif isinstance(entry, Removed):
            self.removed = entry
            # Its events were the run's: what follows is numbered after them (a completion
            # recovery appends to a compacted journal whose own completion was damaged).
            self.last_seq = max(self.last_seq, entry.last)
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

    def _wake(self) -> None:
        self._appended.set()
        self._appended = trio.Event()
