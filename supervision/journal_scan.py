"""Reading a journal file whole on open, and finding records again after damage.

Theory of operation: records are read from the META record on.  Where one fails its checks,
`resync` looks for the next whole record by content (its kind byte and the zero high half of
its seq are cheap to spot; its CRC must then hold and its seq must follow what was read), so
a flipped byte costs one record, never the rest of the file, and no byte that fails its CRC is
ever returned.  What lies between is a `DamagedRange`.  Damage with no valid record after it is
the file's tail: a short one is a torn write (cut, as any crash leaves it); one that is whole in
size but fails its checks is damage, cut only after the original is kept aside as
``<name>.damaged-<time>-<pid>``.

A head that cannot be read (a damaged magic *and* META, a file cut inside its META, an empty
file, garbage) is not the end of the file: `scan_headless` notes why (`HeadDamage`) and reads
the records after it by content, as after any damage; the head's bytes are never cut.
"""

from __future__ import annotations

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
    Corrupt,
    Entry,
    Incomplete,
    JournalError,
    Meta,
    Record,
    decode_entry,
    decode_meta,
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


def read_head(reader: Reader, path: str, size: int) -> tuple[Meta, int] | str:
    """The journal's META and the offset of its first event record, or why they cannot be
    read.  A damaged magic before a whole META record costs nothing (a warning)."""
    magic = size >= len(MAGIC) and reader.read(0, len(MAGIC), size) == MAGIC
    first = read_record(reader, len(MAGIC), size)
    if isinstance(first, Record) and first.kind == K_META:
        try:
            meta = decode_meta(bytes(first.payload))
        except (ValueError, KeyError, struct.error) as exc:
            return f"META record does not decode ({exc!r})"
        if not magic:
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
    return why if magic else f"not a cc-executor journal's magic; {why}"


def scan_headless(journal: Journal, reader: Reader, size: int, reason: str) -> None:
    """Note every record found after a head that cannot be read (by content, as after any
    damage); the head's bytes are never cut, and nothing is if no record is found."""
    magic = size >= len(MAGIC) and reader.read(0, len(MAGIC), size) == MAGIC
    start = len(MAGIC) if magic else 0
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
    reader = Reader(fd)
    magic = reader.read(0, min(size, len(MAGIC)), size)
    if magic != MAGIC and magic[:-1] == MAGIC[:-1] and magic[-1:].isdigit():
        raise JournalError(f"{journal.path}: a journal of format {magic.decode()}")
    head = read_head(reader, journal.path, size)
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
        # for whoever investigates, then cut what cannot be read.
        aside = f"{journal.path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        with open(journal.path, "rb") as original, open(aside, "xb") as copy:
            while chunk := original.read(_SCAN_CHUNK):
                copy.write(chunk)
        journal.kept_aside = aside
        journal.damaged.append(DamagedRange(offset, size - offset, journal.last_seq + 1, None))
        log.warning("journal.damaged_tail", path=journal.path, offset=offset, kept_aside=aside)
    journal.truncated_bytes = size - offset
    os.ftruncate(reader.fd, offset)
    os.fsync(reader.fd)


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
# any seq a run can reach: cheap to look for, so a scan tries the CRC at few places.
_CANDIDATE = re.compile(rb"(?=[\x01-\x06][\s\S]{4}\x00\x00\x00\x00)")
_SCAN_CHUNK = 1024 * 1024


def resync(reader: Reader, start: int, limit: int, after_seq: int) -> tuple[Record, Entry] | None:
    """The first whole, decodable record at or after `start` whose seq is above `after_seq`.

    Records after the one that failed usually start where its length says it ends; that
    place is tried by the caller.  This is the fallback, a scan by content.
    """
    chunk_start = start
    while chunk_start < limit:
        # Each chunk overlaps the next by a record head, so no candidate is missed at a seam.
        chunk = reader.read(chunk_start, min(_SCAN_CHUNK, limit - chunk_start), limit)
        if not chunk:
            return None
        for match in _CANDIDATE.finditer(chunk):
            offset = chunk_start + match.start() - FRAME.size
            if offset < start:
                continue
            found = read_entry(reader, offset, limit)
            if isinstance(found, tuple) and found[0].seq > after_seq:
                return found
        if chunk_start + len(chunk) >= limit:
            return None
        chunk_start += len(chunk) - HEAD.size
    return None
