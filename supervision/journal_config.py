"""A journal's settings, and the small file-system facts it relies on (reserve, boot id, the
locked creation of its file)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable
from typing import Literal

import attrs

from cc_executor.supervision.files import NotRegularFile, open_regular

QuotaPolicy = Literal["block", "gap"]
FsyncPolicy = Literal["never", "completion", "always"]
ErrorPolicy = Literal["block", "cancel"]
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@attrs.frozen
class JournalConfig:
    """How much a run may journal, what happens then, when to fsync, and write faults.

    Attributes:
        quota_bytes: largest journal file, in bytes, that output may fill.
        quota_policy: "block" (the child waits) or "gap" (stop recording, with a GAP record).
        fsync: "never", "completion" (state changes, completion, close) or "always".
        error_policy: on a failed write, "block" (retry; the child waits) or "cancel" (stop
            recording output and end the run).
        retry_initial: first wait before a failed write is tried again (policy "block").
        retry_max: the wait that retries back off to.
        completion_reserve_bytes: space kept for the completion record (at least one record
            of an outcome with a long reason).
        batch_bytes: output queued before a write; 0 writes every record at once.
        faults_kept: write fault episodes remembered for readers that attach later.
    """

    quota_bytes: int = 1024 * 1024 * 1024
    quota_policy: QuotaPolicy = "block"
    fsync: FsyncPolicy = "completion"
    error_policy: ErrorPolicy = "block"
    retry_initial: float = 0.05
    retry_max: float = 2.0
    completion_reserve_bytes: int = 64 * 1024
    batch_bytes: int = 512 * 1024
    faults_kept: int = 64


def make_reserve(path: str, size: int) -> None:
    """A file holding `size` bytes of disk for later (freed by unlinking it).

    Raises:
        OSError: the disk has no room for it.
    """

    def fill(fd: int) -> None:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise
            os.write(fd, bytes(size))  # a file system without fallocate

    write_new_file(path, fill)


def write_new_file(path: str, fill: Callable[[int], None]) -> None:
    """Create `path` afresh (whatever was there before: a stale file of ours, or anything else
    a directory entry can be but a directory) and let `fill(fd)` write it; if that fails,
    remove it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # never opened: a FIFO here would block the open (files.py)
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        fill(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


CREATING = ".creating"  # the name a journal is written under until its head is whole
# A creation takes microseconds; an unlocked file older than this lost its creator.
ABANDONED_AFTER = 60.0


def create_locked(path: str, head: bytes) -> int:
    """A new file at `path` holding `head`, flocked by the descriptor returned (append-only).

    Its name appears only once it is whole and locked: written under ``<path>.creating``, then
    linked.  A daemon reading the directory at start (another one sharing it) so never finds
    an empty, unlocked file of a run just spawned, which it would take for a damaged journal.

    Raises:
        OSError: EEXIST if `path` exists; a full disk (a short write is ENOSPC).
    """
    creating = path + CREATING
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
    fd = os.open(creating, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.write(fd, head) != len(head):
            raise OSError(errno.ENOSPC, f"short write of the journal head to {path}")
        os.link(creating, path)
    except BaseException:
        os.close(fd)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(creating)
    return fd


def remove_if_abandoned(creating: str, now: float) -> bool:
    """Remove `creating` (a ``<journal>.creating`` file) if its creator died before it could:
    nobody holds its lock and it is older than ABANDONED_AFTER (the lock is taken right after
    the file is made).  Its journal, if it was linked, keeps its own name.  True if removed.

    Raises:
        OSError: it could not be opened, checked or removed (other than being gone already).
    """
    try:
        fd = open_regular(creating, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except (NotRegularFile, OSError) as exc:
        if not isinstance(exc, NotRegularFile) and exc.errno != errno.ELOOP:
            raise
        # A FIFO, socket, symlink...: never a journal being created (they are regular files).
        os.unlink(creating)
        return True
    try:
        if now - os.fstat(fd).st_mtime < ABANDONED_AFTER:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # locked: its creator (or its linked journal's writer) is alive
        os.unlink(creating)
        return True
    finally:
        os.close(fd)


def held_by_anyone(path: str) -> bool | None:
    """Whether any process holds a lock on the file at `path`, or on the file a link there
    leads to, as /proc/locks says: for a journal this process cannot open to try its lock
    itself (its permissions removed, a link in its place — to a live journal of another
    daemon, whose run then is alive).  None if that cannot be told (the file gone, no /proc)."""
    try:
        files = [os.stat(path, follow_symlinks=False)]
        with contextlib.suppress(OSError):  # a link to nothing (or a loop) leads nowhere
            files.append(os.stat(path))
        with open("/proc/locks") as f:
            table = f.read()
    except OSError:
        return None
    # Each lock's file as major:minor (hex) and inode; a waiter's line names it too.
    keys = {f"{os.major(i.st_dev):02x}:{os.minor(i.st_dev):02x}:{i.st_ino}" for i in files}
    return any(not keys.isdisjoint(line.split()) for line in table.splitlines())


def boot_id() -> str:
    """This boot's id: processes recorded under another boot cannot be alive."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
