"""Reading a journal from a seq, then following it live.

Theory of operation: a cursor has its own descriptor and an offset that only moves forward, to
the end of a whole record or past damage, so every read makes progress and a reader can never
spin.  It yields each entry with a seq above the last one it accounted for; wherever seqs are
missing it first yields one `Gap` from the first missing seq, with the reason it knows (a GAP
record: the quota; damage: the bytes and seqs concerned; a write fault: "not recorded").
Whatever the file holds and however long it is (shorter than `committed` too: cut under the
live writer), every read moves the offset forward and what cannot be read is a Gap, never an
exception.  A record is yielded only if it can be the run's: a seq the journal has numbered
(`last_seq`), and at or after the journal's completion only that completion.  A
journal's write faults are announced once each (`JournalFault`), as soon as the cursor has
read everything committed.  A finished journal whose completion is not in the file (a full
disk, damage) yields the completion the journal holds in memory, so a reader always ends on
it.

What a cursor yields (`Replayed`): `Output`, `StateEvent`, `Note`, `CompletedEvent` (the
last), `Gap` and `JournalFault`.  META and REMOVED records are never yielded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

import attrs

from cc_executor.supervision.events import CompletedEvent, Note, Output, StateEvent
from cc_executor.supervision.files import open_regular
from cc_executor.supervision.journal_codec import (
    DAMAGED,
    FRAME,
    K_META,
    MAGIC,
    Corrupt,
    Entry,
    Gap,
    Incomplete,
    Record,
    Removed,
    seeds_of_magic,
)
from cc_executor.supervision.journal_reader import Reader, read_record
from cc_executor.supervision.journal_scan import read_entry, resync

if TYPE_CHECKING:
    from cc_executor.supervision.journal import Journal

NOT_RECORDED = "not recorded"
REMOVED = "removed by retention"


@attrs.frozen
class JournalFault:
    """The journal could not record the event `seq` (`reason` names the error); `policy`
    says what follows: "block" (recording, and the child, wait for the disk) or "cancel"."""

    seq: int
    reason: str
    policy: Literal["block", "cancel"]


Replayed = Output | StateEvent | CompletedEvent | Note | Gap | JournalFault


class Cursor:
    """Reads a journal's entries after `from_seq`, then follows it live."""

    def __init__(self, journal: Journal, from_seq: int) -> None:
        self._journal = journal
        self._fd = open_regular(journal.path, os.O_RDONLY)  # a FIFO put there: an OSError
        # Its records are checked as the magic of the file it opened says (a journal compacted
        # since it was opened is of the current version, whatever it was), or as journal.open
        # found where the magic is damaged.
        seeds = seeds_of_magic(os.pread(self._fd, len(MAGIC), 0), journal.seed)
        self._reader = Reader(self._fd, journal.seeds if seeds is None else seeds)
        head = read_record(self._reader, len(MAGIC), journal.committed)
        # Events start after the META record (which journal.open or create has checked), or
        # where a head that cannot be read starts (what follows is read as after damage).
        damage = journal.head_damage
        start = len(MAGIC) if damage is None else damage.offset
        meta_end = head.end if isinstance(head, Record) and head.kind == K_META else None
        self._offset = start if meta_end is None else meta_end
        self._seen = from_seq  # every seq up to this one is accounted for
        self._reason: Gap | None = None  # why the next missing seqs are missing, if known
        if meta_end is None and damage is None:
            # The META journal.open or create checked is gone from the file (cut, overwritten
            # since): what is missing after it is missing for damage.
            self._reason = Gap(from_seq + 1, DAMAGED, offset=start, length=0)
        self._after_gap = False  # a Gap was yielded: the next entry may skip seqs
        self._file_seq = 0  # the seq of the last record read from the file
        # Faults are numbered 0, 1, ... in the order they happened; this is the next to announce
        # (those of events this reader does not read are skipped).
        self._faults_seen = journal.fault_count - len(journal.faults)
        while (
            self._faults_seen < journal.fault_count
            and self._fault(self._faults_seen).seq <= from_seq
        ):
            self._faults_seen += 1
        self._ended = False  # the completion was yielded

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _limit(self) -> int:
        # A finished journal may have been compacted (renamed over): our descriptor still reads
        # the old file, which is whole, so read it to its end.
        if self._journal.finished:
            return os.fstat(self._fd).st_size
        return self._journal.committed

    def read_nowait(self) -> Replayed | None:
        """The next entry, or None if none is there yet (or ever: see `at_end`)."""
        if self._ended:
            return None
        limit = self._limit()
        while self._offset < limit:
            recent = self._journal.recent(self._offset)
            read = (
                recent
                if recent is not None and recent[0].end <= limit
                else read_entry(self._reader, self._offset, limit)
            )
            found = (
                self._past_damage(read, limit) if isinstance(read, Incomplete | Corrupt) else read
            )
            if found is None:
                break
            record, entry = found
            self._offset = record.end
            if not self._owned(entry):
                # Valid record bytes that cannot be this run's (found after damage: another
                # journal's, or inside a payload): damage, never yielded.
                if self._reason is None:
                    length = record.end - record.offset
                    self._reason = Gap(self._seen + 1, DAMAGED, offset=record.offset, length=length)
                continue
            self._file_seq = max(self._file_seq, record.seq)
            if isinstance(entry, Removed):
                self._reason = Gap(entry.first, REMOVED, until_seq=entry.last)
                continue
            if isinstance(entry, Gap) and entry.seq <= self._seen:
                self._reason = entry
                continue
            if entry.seq <= self._seen:
                # Read already: a reason found before it (a removed range, damage) was for
                # seqs behind the reader, not for what it has yet to read.
                self._reason = None
                continue
            fault = self._fault_before(min(entry.seq, self._seen + 1))
            if fault is not None:
                self._offset = record.offset  # read it again after the fault
                return fault
            if entry.seq > self._seen + 1 and not self._after_gap:
                self._offset = record.offset  # read it again after the gap
                return self._yield_gap(self._hole(entry.seq - 1))
            if isinstance(entry, Gap):
                return self._yield_gap(entry)
            return self._yield(entry)
        return self._from_memory()

    def _owned(self, entry: Entry) -> bool:
        """Whether a record read from the file can be the run's: the journal has numbered its
        seq (a live journal's `last_seq` is its writer's; a GAP's, the next one), and nothing
        but the completion the journal holds is at or after that completion's seq."""
        journal = self._journal
        seq = entry.first if isinstance(entry, Removed) else entry.seq
        last = entry.last if isinstance(entry, Removed) else seq
        # A GAP record is numbered as the first event it did not record, which the journal
        # has not counted (until what follows it is): it may be one past `last_seq`.
        numbered = journal.last_seq + 1 if isinstance(entry, Gap) else journal.last_seq
        if last > numbered:
            return False
        completed = journal.completed
        if completed is None or last < completed.seq:
            return True
        return entry == completed

    def next_size(self) -> int | None:
        """The length of the next record in the file (frame and body) without reading it, or
        None if no whole frame head is there yet, or the file ends before it (the journal's
        word, not checked: a damaged length, or a file cut short, is found out by
        `read_nowait`)."""
        limit = self._limit()
        recent = self._journal.recent(self._offset)
        if recent is not None and recent[0].end <= limit:
            return recent[0].end - self._offset
        if limit - self._offset < FRAME.size:
            return None
        frame = os.pread(self._fd, FRAME.size, self._offset)
        if len(frame) < FRAME.size:  # the file is shorter than committed (cut under us)
            return None
        length: int = FRAME.unpack(frame)[0]
        return FRAME.size + length

    def _fault(self, number: int) -> JournalFault:
        journal = self._journal
        return journal.faults[number - (journal.fault_count - len(journal.faults))]

    def _fault_before(self, seq: int) -> JournalFault | None:
        """The next fault to announce, if it happened at or before `seq`."""
        journal = self._journal
        self._faults_seen = max(self._faults_seen, journal.fault_count - len(journal.faults))
        if self._faults_seen < journal.fault_count and self._fault(self._faults_seen).seq <= seq:
            self._faults_seen += 1
            return self._fault(self._faults_seen - 1)
        return None

    def _past_damage(self, bad: Incomplete | Corrupt, limit: int) -> tuple[Record, Entry] | None:
        """The next good record after damage at `bad.offset` (None: none before `limit`, and
        the cursor moves to it); the damage becomes the reason for the seqs it hid."""
        found = resync(self._reader, bad.offset + 1, limit, self._file_seq)
        end = limit if found is None else found[0].offset
        self._reason = Gap(self._seen + 1, DAMAGED, offset=bad.offset, length=end - bad.offset)
        if found is None:
            self._offset = limit
        return found

    def _hole(self, until_seq: int | None) -> Gap:
        known = self._reason
        if known is not None:
            return attrs.evolve(known, seq=self._seen + 1, until_seq=until_seq)
        journal = self._journal
        if journal.gap is not None:
            return Gap(self._seen + 1, journal.gap.reason, until_seq=until_seq)
        if journal.written_here and not journal.fault_count:
            # This process wrote it and never left anything unrecorded (no gap, no write
            # fault): the missing records were written, and are gone from the file (cut
            # between two records under the live writer, say).  That is damage.
            return Gap(self._seen + 1, DAMAGED, until_seq, offset=self._offset, length=0)
        return Gap(self._seen + 1, NOT_RECORDED, until_seq=until_seq)

    def _yield_gap(self, gap: Gap) -> Gap:
        self._reason = None
        self._after_gap = True
        self._seen = gap.seq - 1 if gap.until_seq is None else gap.until_seq
        return gap

    def _yield(self, entry: Output | StateEvent | CompletedEvent | Note) -> Replayed:
        self._reason = None
        self._after_gap = False
        self._seen = entry.seq
        if isinstance(entry, CompletedEvent):
            self._ended = True
        return entry

    def _from_memory(self) -> Replayed | None:
        """What the journal knows that the file does not (yet) say."""
        journal = self._journal
        if journal.faults:
            fault = self._fault_before(journal.faults[-1].seq)  # caught up: every fault is due
            if fault is not None:
                return fault
        completed = journal.completed
        if not journal.finished or completed is None or completed.seq <= self._seen:
            if journal.finished and self._reason is not None and not self._after_gap:
                # Damage up to the end of a journal that has no completion: say so once.
                return self._yield_gap(self._hole(None))
            return None
        if completed.seq > self._seen + 1 and not self._after_gap:
            return self._yield_gap(self._hole(completed.seq - 1))
        return self._yield(completed)

    def at_end(self) -> bool:
        """True when every entry has been read and the journal will not grow."""
        return self._ended or (
            self._journal.finished
            and self._offset >= self._limit()
            and self._journal.fault_count <= self._faults_seen
            and (self._journal.completed is None or self._journal.completed.seq <= self._seen)
            and (self._reason is None or self._after_gap)
        )

    async def read(self) -> Replayed | None:
        """The next entry, waiting for it if the journal is live; None at the very end."""
        while True:
            entry = self.read_nowait()
            if entry is not None:
                return entry
            if self.at_end():
                return None
            await self._journal.wait_appended(self._offset, self._faults_seen)
