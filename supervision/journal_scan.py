"""Reading a journal file whole on open, and finding records again after damage.

Theory of operation: records are read from the META record on.  Where one fails its checks,
`resync` looks for the next whole record by content (its kind byte and the zero high half of
its seq are cheap to spot; its CRC must then hold and its seq must follow what was read), so
a flipped byte costs one record, never the rest of the file, and no byte that fails its CRC is
ever returned.  What lies between is a `DamagedRange`.  Damage with no valid record after it is
the file's tail: a short one is a torn write (cut, as any crash leaves it); one that is whole in
size but fails its checks is damage, cut after the original is kept aside as
``<name>.damaged-<time>-<pid>`` (`keep_aside`: bounded, holes skipped, only if the disk keeps
room after it; a copy that cannot be made is never left partial and never hides the run: the
tail is cut all the same, logged as not kept, so the next start has nothing to try again).
A scan by content (`resync`) ends on any bytes and any file length: each chunk moves it on.

A head that cannot be read (a damaged magic *and* META, a file cut inside its META, an empty
file, garbage) is not the end of the file: `scan_headless` notes why (`HeadDamage`) and reads
the records after it by content, as after any damage; the head's bytes are never cut.

Which journal a record belongs to is in its CRC (journal_codec.py): the file's magic says its
version, so how its records are checked (`read_head`).  A damaged magic before a whole META
is told by the seed that META holds with.  Where neither can be read the version cannot be
told, and records are checked with the run's seed or none (UNBOUND): then, and only then, a
v1 journal's record found after damage can be taken for the run's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import struct
import time
from typing import TYPE_CHECKING

import attrs
import structlog

from cc_executor.supervision.journal_codec import (
    FRAME,
    HEAD,
    K_META,
    MAGIC,
    MAGICS,
    UNBOUND,
    Corrupt,
    Entry,
    Incomplete,
    JournalError,
    Meta,
    Record,
    decode_entry,
    decode_meta,
    seeds_of_magic,
)
from cc_executor.supervision.journal_reader import Reader, read_record

if TYPE_CHECKING:
    from cc_executor.supervision.journal import Journal

log = structlog.get_logger()


@attrs.frozen
class DamagedRange:
    """Bytes `offset`..`offset + length` of the file are not records; seqs first..last lost."""

    offset: int
    length: int
    first_seq: int
    last_seq: int | None


@attrs.frozen
class HeadDamage:
    """The journal's head (magic and META record) cannot be read, for `reason`: bytes
    `offset`..`offset + length` precede the first record that can (the whole file if none)."""

    reason: str
    offset: int
    length: int


def _intact_magic(reader: Reader, size: int) -> bytes | None:
    """The file's magic if it is one of a version this reads, else None."""
    magic = reader.read(0, len(MAGIC), size) if size >= len(MAGIC) else b""
    return magic if magic in MAGICS else None


def read_head(reader: Reader, path: str, size: int, seed: int) -> tuple[Meta, int] | str:
    """The journal's META and the offset of its first event record, or why they cannot be
    read.  A damaged magic before a whole META record costs nothing (a warning).

    Sets `reader.seeds` to what the file's records are checked with (the module docstring):
    as its magic says; else the seed of the run (`seed`) or UNBOUND, whichever its META
    holds with; else both.
    """
    magic = _intact_magic(reader, size)
    known = None if magic is None else seeds_of_magic(magic, seed)
    trials = [(seed,), (UNBOUND,)] if known is None else [known]
    for seeds in trials:
        reader.seeds = seeds
        first = read_record(reader, len(MAGIC), size)
        if isinstance(first, Record) and first.kind == K_META:
            break
    else:  # no META: the version is told by the magic, or cannot be
        reader.seeds = (seed, UNBOUND) if known is None else known
    if isinstance(first, Record) and first.kind == K_META:
        try:
            meta = decode_meta(bytes(first.payload))
        except (ValueError, KeyError, struct.error) as exc:
            return f"META record does not decode ({exc!r})"
        if magic is None:
            log.warning("journal.damaged_magic", path=path)
        return meta, first.end
    if size == 0:
        return "empty file"
    if isinstance(first, Record):
        why = f"no META record (a record of kind {first.kind} first)"
    elif isinstance(first, Incomplete):
        why = "META record cut short"
    else:
        why = f"META record corrupt ({first.why})"
    return why if magic is not None else f"not a cc-executor journal's magic; {why}"


def scan_headless(journal: Journal, reader: Reader, size: int, reason: str) -> None:
    """Note every record found after a head that cannot be read (by content, as after any
    damage, checked as `read_head` found); the head's bytes are never cut, and nothing is if
    no record is found."""
    start = 0 if _intact_magic(reader, size) is None else len(MAGIC)
    found = resync(reader, start, size, 0)
    end = size if found is None else found[0].offset
    journal.head_damage = HeadDamage(reason, start, end - start)
    log.warning(
        "journal.meta_damaged", path=journal.path, reason=reason, offset=start, bytes=end - start
    )
    if found is None:
        journal.committed = size
        return
    if found[0].seq > 1:  # events were in the damaged bytes too
        journal.damaged.append(DamagedRange(start, end - start, 1, found[0].seq - 1))
    scan_records(journal, reader, end, size)


def scan_file(journal: Journal, fd: int) -> None:
    """Read a whole journal file into `journal`: its META, or why it cannot be read, and then
    every record (see the module docstring).

    Raises:
        JournalError: the file is not a regular file, or a journal of another format version
            (its magic says so: it is left as it is, never taken for a damaged one).
    """
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise JournalError(f"{journal.path}: not a regular file")
    size = info.st_size
    reader = Reader(fd, journal.seeds)
    magic = reader.read(0, min(size, len(MAGIC)), size)
    if magic not in MAGICS and magic[:-1] == MAGIC[:-1] and magic[-1:].isdigit():
        raise JournalError(f"{journal.path}: a journal of format {magic.decode()}")
    head = read_head(reader, journal.path, size, journal.seed)
    journal.seeds = reader.seeds  # what its records are checked and appended with
    if isinstance(head, str):
        scan_headless(journal, reader, size, head)
    else:
        journal.meta, offset = head
        scan_records(journal, reader, offset, size)


def scan_records(journal: Journal, reader: Reader, offset: int, size: int) -> None:
    """Note every record from `offset` into `journal`, past damage; cut what cannot be read
    at the tail.  Sets `committed`, `damaged`, `truncated_bytes` and `kept_aside`."""
    while offset < size:
        read = read_entry(reader, offset, size)
        found = (
            _skip_damage(journal, reader, read, size)
            if isinstance(read, Incomplete | Corrupt)
            else read
        )
        if found is None:
            break
        record, entry = found
        journal._note(entry)
        offset = record.end
    journal.committed = offset
    if offset < size:
        _cut_tail(journal, reader, offset, size)


def _skip_damage(
    journal: Journal, reader: Reader, bad: Incomplete | Corrupt, limit: int
) -> tuple[Record, Entry] | None:
    """The next good record after damage at `bad.offset` (the range is noted), or None."""
    found = resync(reader, bad.offset + 1, limit, journal.last_seq)
    if found is None:
        return None
    record = found[0]
    first = journal.last_seq + 1
    lost_until = record.seq - 1 if record.seq > first else None
    journal.damaged.append(DamagedRange(bad.offset, record.offset - bad.offset, first, lost_until))
    log.warning(
        "journal.damaged",
        path=journal.path,
        offset=bad.offset,
        bytes=record.offset - bad.offset,
        first_seq=first,
        last_seq=lost_until,
    )
    return found


def _cut_tail(journal: Journal, reader: Reader, offset: int, size: int) -> None:
    if isinstance(read_entry(reader, offset, size), Corrupt):
        # Whole in size but failing its checks: damage, not a torn write.  Keep the original
        # for whoever investigates (if the disk has room), then cut what cannot be read.
        journal.damaged.append(DamagedRange(offset, size - offset, journal.last_seq + 1, None))
        journal.kept_aside = keep_aside(journal.path, reader.fd, offset, size)
        log.warning(
            "journal.damaged_tail", path=journal.path, offset=offset, kept_aside=journal.kept_aside
        )
    journal.truncated_bytes = size - offset
    try:
        if journal.read_only is not None:  # opened for reading only: why it cannot be cut
            raise journal.read_only
        os.ftruncate(reader.fd, offset)
        os.fsync(reader.fd)
    except OSError as exc:  # the run is read up to `offset` all the same; appends go there
        log.warning("journal.tail_not_cut", path=journal.path, offset=offset, error=exc.strerror)


# The most a copy kept aside holds: the damaged tail first, then what precedes it.  A damaged
# tail is one record (64 MiB at most), most often a few bytes; its start is what matters.
KEEP_ASIDE_BYTES = 1024 * 1024
# Free space a copy must leave on the disk: it never takes the room runs need to record.
KEEP_ASIDE_FREE = 8 * 1024 * 1024


def keep_aside(path: str, fd: int, offset: int, size: int) -> str | None:
    """Copy the damaged tail at `offset` of the journal `fd` (its data, up to KEEP_ASIDE_BYTES,
    then as much of what precedes it as that leaves room for) to
    ``<path>.damaged-<time>-<pid>``, at the same offsets (the rest a hole; holes in the
    original stay holes); the copy's path, or None if it was not made.

    Never the reason a journal cannot be read: a disk without room for the copy and
    KEEP_ASIDE_FREE more, or any failure to write it, leaves no copy (a partial one is
    removed) and is logged (``journal.damaged_tail_not_kept``); the tail is cut all the same,
    so the next start does not try again.
    """
    tail = _data_extents(fd, offset, min(size, offset + KEEP_ASIDE_BYTES))
    room = KEEP_ASIDE_BYTES - sum(end - start for start, end in tail)
    extents = _data_extents(fd, max(0, offset - room), offset) + tail
    needed = sum(end - start for start, end in extents)
    aside = f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    try:
        disk = os.statvfs(os.path.dirname(path) or ".")
        if disk.f_bavail * disk.f_frsize < needed + KEEP_ASIDE_FREE:
            raise OSError(errno.ENOSPC, f"too little free space to keep {needed} bytes aside")
        copy = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        _not_kept(path, exc)
        return None
    try:
        for start, end in extents:
            at = start
            while at < end:
                chunk = os.pread(fd, min(_SCAN_CHUNK, end - at), at)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    written = os.pwrite(copy, view, at)
                    view, at = view[written:], at + written
        os.ftruncate(copy, size)  # as long as the original: offsets read the same in both
        os.fsync(copy)
    except OSError as exc:
        os.close(copy)
        with contextlib.suppress(OSError):
            os.unlink(aside)  # never a partial copy left taking the disk
        _not_kept(path, exc)
        return None
    os.close(copy)
    return aside


def _not_kept(path: str, exc: OSError) -> None:
    log.warning("journal.damaged_tail_not_kept", path=path, error=exc.strerror or str(exc))


def _data_extents(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """The ranges of bytes `start`..`end` of `fd` that hold data (holes skipped)."""
    extents: list[tuple[int, int]] = []
    at = start
    while at < end:
        try:
            data = os.lseek(fd, at, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from here on
                break
            return [(start, end)]  # no SEEK_DATA here: copy it all
        if data >= end:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        extents.append((data, hole))
        at = hole
    return extents


def read_entry(
    reader: Reader, offset: int, limit: int
) -> tuple[Record, Entry] | Incomplete | Corrupt:
    """`read_record`, and the record's entry: a payload that does not decode is Corrupt."""
    result = read_record(reader, offset, limit)
    if not isinstance(result, Record):
        return result
    if result.kind == K_META:
        return Corrupt(offset, "a second META record")
    try:
        return result, decode_entry(result)
    except ValueError as exc:
        return Corrupt(offset, str(exc))


# A record's kind byte (never META after the first) and the high half of its u64 seq, zero for
# any seq a run can reach: cheap to look for, so a scan tries the CRC at few places.  The kind
# byte is matched outside the lookahead (the same matches, each at its kind byte): the regex
# engine then skips to each byte of that class, three times as fast over bytes with none.
_CANDIDATE = re.compile(rb"[\x01-\x06](?=[\s\S]{4}\x00\x00\x00\x00)")
_SCAN_CHUNK = 1024 * 1024


def _next_data(fd: int, at: int) -> int | None:
    """Where the first byte at or after `at` that is not in a hole is (`at` where the file
    system cannot tell), or None if only a hole follows.  A hole reads as zeros, and no record
    starts in zeros (its kind byte is not 0): a scan skips it whatever its size (a journal
    extended by gigabytes of sparse zeros — `truncate -s`, a file system that crashed with
    the size updated but not the data — is read in the time its data takes)."""
    try:
        return os.lseek(fd, at, os.SEEK_DATA)
    except OSError as exc:
        return None if exc.errno == errno.ENXIO else at


def resync(reader: Reader, start: int, limit: int, after_seq: int) -> tuple[Record, Entry] | None:
    """The first whole, decodable record at or after `start` whose seq is above `after_seq`.

    Records after the one that failed usually start where its length says it ends; that
    place is tried by the caller.  This is the fallback, a scan by content.  Whatever the
    file holds and however long it is (shorter than `limit` too: a file cut under a live
    writer), each chunk read moves the scan forward, and a chunk cut short by the file's end
    is the last: it never loops, and what it never found is damage for the caller to report.
    """
    chunk_start = max(start, 0)
    while chunk_start < limit:
        data = _next_data(reader.fd, chunk_start)
        if data is None or data >= limit:
            return None  # only holes (zeros) are left to read
        # Every candidate's kind byte is data (a hole's bytes are zeros): the scan starts
        # there (its record's frame may start a few bytes before, in what `start` allows).
        chunk_start = data
        want = min(_SCAN_CHUNK, limit - chunk_start)
        chunk = reader.read(chunk_start, want, limit)
        for match in _CANDIDATE.finditer(chunk):
            offset = chunk_start + match.start() - FRAME.size
            if offset < start:
                continue
            found = read_entry(reader, offset, limit)
            if isinstance(found, tuple) and found[0].seq > after_seq:
                return found
        if len(chunk) < want or chunk_start + want >= limit:
            return None  # the file (or what may be read of it) ends in this chunk
        # Each chunk overlaps the next by a record head, so no candidate is missed at a seam
        # (a whole chunk is far longer than a head: the step is never zero).
        chunk_start += want - HEAD.size
    return None
