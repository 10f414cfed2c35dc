"""Retention: a completed journal rewritten as META, REMOVED and COMPLETED, atomically.

The new file is written beside the old one, fsynced and renamed over it in a worker thread
(the event loop never waits for the disk); a cursor opened before keeps reading the old file,
which is whole, through its own descriptor.  The new file is of the current format whatever
the old one was (v2: its records bound by the journal's seed, taken from the journal's run id,
never from the name it is written under); a cursor checks the file it reads as its own magic
says.
"""

from __future__ import annotations

import os

import attrs

from cc_executor.supervision.journal import Journal
from cc_executor.supervision.journal_codec import MAGIC, Removed, encode_entry, encode_meta
from cc_executor.supervision.journal_config import write_new_file
from cc_executor.supervision.threads import in_thread

COMPACT_SUFFIX = ".compact"


def _write_compacted(path: str, data: bytes) -> None:
    def fill(fd: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)

    write_new_file(path + COMPACT_SUFFIX, fill)
    os.replace(path + COMPACT_SUFFIX, path)


async def compact(journal: Journal) -> None:
    """Remove a completed journal's events, keeping its META and completion.

    Raises:
        OSError: the compacted file could not be written (the journal is unchanged).
    """
    completed = journal.completed
    assert completed is not None
    assert journal.finished
    removed = Removed(1, completed.seq - 1) if completed.seq > 1 else None
    # A journal whose META could not be read stays without one (`head_damage` says so).
    seed = journal.seed
    data = MAGIC + (b"" if journal.meta is None else encode_meta(journal.meta, seed))
    if removed is not None:
        data += encode_entry(removed, seed)
    data += encode_entry(completed, seed)
    await in_thread(_write_compacted, journal.path, data)
    journal.seeds = (seed,)
    journal.committed = len(data)
    journal.removed = removed
    journal.gap = None
    journal.damaged = []
    if journal.head_damage is not None:  # its damaged bytes are gone; events start at once
        journal.head_damage = attrs.evolve(journal.head_damage, offset=len(MAGIC), length=0)
