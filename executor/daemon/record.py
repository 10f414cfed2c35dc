"""The daemon's record in its state directory: how the next daemon ends the runs of one that
died (SIGKILL, the OOM killer) while they ran.

Theory of operation
-------------------
A durable run has its journal, and the next start completes it as lost and kills what is left
of it (runs/recovery.py).  A run that is not durable has nothing on disk: a daemon killed with
SIGKILL used to leave its processes running, adopted by init or a subreaper, known to nobody.
So every daemon has an id, 128 random bits (`DaemonRecord.claim`); every process of its runs
carries it in its environment (``CCX_DAEMON=<id>``, supervision/marker.py: set after the
request's variables, which may not name anything ``CCX_``, and inherited by everything a run
starts); and for its whole life the daemon holds an flock on ``<state_dir>/daemons/<id>.lock``.
The lock is the proof of life: the kernel drops it when the process is gone, however it went.

At start, once its journals are read, a daemon looks at every other record there
(`candidates`).  One whose lock it can take is a daemon that is gone: every live process
carrying its id, and every process descending from one and started after it, is SIGKILLed
(supervision/leftovers.py `kill_daemons_leftovers`), then the record is removed.  A record
whose lock is held is a live daemon sharing the directory (a SIGSTOPped one too), and is left
alone.  Only the marker proves: a pid, group or session may have been reused since the crash,
and a process that emptied its environment and left its parent (``setsid env -i``) is not
found (docs/operations.md).  A daemon started inside a run carries a marker of its own, not
the run's daemon's (daemon/marking.py), and descent stops at it.

A scan of /proc reads every process's stat and environment: one scan a record made a thousand
dead records cost seconds, and a stop waited for them all.  So records are swept `BATCH` at a
time (`sweep`): the batch's unlocked records are held locked while one scan matches every id of
the batch (repeated only while it finds processes), then removed; between two batches the
daemon's serve looks whether it is stopping, and if so leaves the rest for the next start
(executor/daemon/serve.py).  Short of descriptors (EMFILE), listing the records or opening one
is retried with the backoff of /proc's reads; then that record and the rest stay (`Exhausted`,
`Swept.exhausted`), as they do when /proc stays unreadable.

A record is made under ``<id>.lock.creating`` and linked once locked (journal_config
``create_locked``), so a daemon sharing the directory never finds one unlocked while its owner
lives; an abandoned ``.creating`` (its maker died in those microseconds, before any run) is
removed like a journal's.  Only a regular file named ``<32 hex digits>.lock`` is a record:
anything else there (``.lock``, ``x.lock``, a directory, a FIFO) names no daemon — an empty or
made-up id could match processes that carry no daemon's marker — and is left alone.

A record removed by hand (``rm``, ``rm -r daemons``) or replaced by another file while its
daemon lives would leave that daemon's runs to init if it were killed, and an unlocked file
of its name would make the next daemon end the runs of a live one.  So every `RECHECK`
seconds the daemon checks that the file at its record's name is the one it holds locked
(`renew`), and makes it again when not — as it does a record that could not be made at start,
once it can.  A crash within those seconds of a removal leaves the runs as before.

On a graceful exit (`release`), once every run has ended, whatever
still carries the daemon's id — nothing, unless a process escaped every ladder — is killed, and
the record removed; a record that cannot be made (a read-only state directory, EACCES, no inode
left) is logged (``daemon.record_failed``) and the daemon serves all the same: then a crash of
it leaves its runs' processes as before, until a later check can make it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import attrs

from cc_executor.supervision import SupervisionConfig
from cc_executor.supervision.files import NotRegularFile, open_regular
from cc_executor.supervision.journal_config import CREATING, create_locked, remove_if_abandoned
from cc_executor.supervision.leftovers import kill_daemons_leftovers
from cc_executor.supervision.procfs import EXHAUSTED, ProcfsExhausted

SUFFIX = ".lock"
DIRECTORY = "daemons"
# What `DaemonRecord.claim` names a record: secrets.token_hex(16).
ID = re.compile(r"[0-9a-f]{32}")
# Records swept with one scan of /proc (`sweep`): each is held open (locked) meanwhile.
BATCH = 128
# Seconds between two checks that the record is still at its name (`DaemonRecord.renew`).
RECHECK = 2.0


def directory_of(state_dir: str) -> str:
    return os.path.join(state_dir, DIRECTORY)


@attrs.define
class DaemonRecord:
    """This daemon's id and its locked record (`fd` None when it could not be made)."""

    daemon_id: str
    path: str
    fd: int | None
    error: str | None = None

    @classmethod
    def claim(cls, state_dir: str, daemon_id: str | None = None) -> DaemonRecord:
        """A new id (or `daemon_id`: the one a re-executed daemon carries, daemon/marking.py)
        and its record, locked by this process until `release` (blocking: at start, before
        any run).  Never raises: a record that cannot be made says why."""
        daemon_id = daemon_id or secrets.token_hex(16)
        record = cls(daemon_id, os.path.join(directory_of(state_dir), daemon_id + SUFFIX), None)
        record.renew()
        return record

    def renew(self) -> bool:
        """Make the record again if the file at its name is not the one this daemon holds
        locked (removed, replaced, or never made); blocking.  True if it was made now; on
        failure `error` says why (and is None once the record is in place).  Never raises."""
        if self.fd is not None and self._in_place():
            return False
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            try:
                fd = create_locked(self.path, b"")
            except FileExistsError:  # a file of our name that we do not hold: it goes
                os.unlink(self.path)
                fd = create_locked(self.path, b"")
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror or exc}"
            return False
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.error = fd, None
        return True

    def _in_place(self) -> bool:
        assert self.fd is not None
        try:
            named = os.stat(self.path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True  # cannot tell (EACCES on the directory, EIO): leave it be
        held = os.fstat(self.fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def release(self, config: SupervisionConfig) -> list[int]:
        """At a graceful exit, after every run ended: kill what still carries the id, then
        remove the record (blocking); return the pids killed.

        Raises:
            ProcfsExhausted: /proc could not be read; the record stays (unlocked) for the
                next start to use.
        """
        try:
            killed = kill_daemons_leftovers([self.daemon_id], config=config)[0][self.daemon_id]
            if self.fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            return killed
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


@attrs.frozen
class Ended:
    """What the sweep did with one dead daemon's record: the pids it killed, or why it could
    not look (the record then stays for a later start)."""

    daemon_id: str
    killed: list[int]
    error: str | None = None


@attrs.frozen
class Swept:
    """One batch of `sweep`: the records found dead, the scans of /proc it took, and — when
    /proc or the records could not be read for want of a descriptor — why; then every record
    of the batch that was not ended stays, and so should the rest (`exhausted`)."""

    ended: list[Ended]
    scans: int
    exhausted: str | None = None


def candidates(state_dir: str, own_id: str, config: SupervisionConfig) -> list[str]:
    """The ids of the other daemons with a record here, in order (blocking); an abandoned
    ``.creating`` is removed on the way.  Short of descriptors, retried with the backoff of
    /proc's reads.

    Raises:
        Exhausted: no descriptor to list the directory with, through every retry.
        OSError: the directory could not be listed (other than not being there).
    """
    directory = directory_of(state_dir)
    try:
        names = sorted(_retrying(os.listdir, directory, config))
    except (FileNotFoundError, NotADirectoryError):  # none (claim said why if it could not)
        return []
    now = time.time()
    ids: list[str] = []
    for name in names:
        if name.endswith(SUFFIX + CREATING) and ID.fullmatch(name[: -len(SUFFIX + CREATING)]):
            with contextlib.suppress(OSError):
                remove_if_abandoned(os.path.join(directory, name), now)
            continue
        daemon_id = name[: -len(SUFFIX)]
        if name.endswith(SUFFIX) and ID.fullmatch(daemon_id) and daemon_id != own_id:
            ids.append(daemon_id)  # else not a record (names no daemon), or ours
    return ids


def sweep(state_dir: str, daemon_ids: list[str], config: SupervisionConfig) -> Swept:
    """End the runs of those of `daemon_ids` whose record is not locked, with one scan of /proc
    for all of them (repeated only while it finds processes), and remove their records
    (blocking: a worker thread's).  A record whose lock is held, or that is gone, is left."""
    directory = directory_of(state_dir)
    locked: dict[str, int] = {}
    ended: list[Ended] = []
    try:
        for daemon_id in daemon_ids:
            path = os.path.join(directory, daemon_id + SUFFIX)
            try:
                fd = _lock_if_dead(path, config)
            except Exhausted as exc:
                return Swept(ended, 0, str(exc))
            except OSError as exc:
                ended.append(Ended(daemon_id, [], f"{path}: {exc.strerror or exc}"))
                continue
            if fd is not None:
                locked[daemon_id] = fd
        if not locked:
            return Swept(ended, 0)
        try:
            killed, scans = kill_daemons_leftovers(list(locked), config=config)
        except ProcfsExhausted as exc:
            return Swept(ended, config.procfs_retries, str(exc))
        for daemon_id in locked:
            with contextlib.suppress(OSError):  # gone already
                os.unlink(os.path.join(directory, daemon_id + SUFFIX))
            ended.append(Ended(daemon_id, killed.get(daemon_id, [])))
        return Swept(ended, scans)
    finally:
        for fd in locked.values():
            os.close(fd)


class Exhausted(Exception):
    """No file descriptor to open a record or list their directory with, through every
    retry: the records stay for a later start."""


T = TypeVar("T")


def _retrying(call: Callable[[str], T], path: str, config: SupervisionConfig) -> T:
    """`call(path)`, again with the backoff of /proc's reads while it fails for want of a
    descriptor (EMFILE, ENFILE, ENOMEM).

    Raises:
        Exhausted: it still failed so after `config.procfs_retries` attempts.
        OSError: it failed otherwise.
    """
    retry = config.procfs_retry_initial
    for attempt in range(config.procfs_retries):
        try:
            return call(path)
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            if attempt + 1 >= config.procfs_retries:
                raise Exhausted(f"{path}: {exc.strerror or exc}") from None
        time.sleep(retry)
        retry = min(retry * 2, config.procfs_retry_max)
    raise Exhausted(f"{path}: not tried (no retries configured)")


def _lock_if_dead(path: str, config: SupervisionConfig) -> int | None:
    """The record at `path` opened and locked, or None: its daemon lives, it is gone already,
    or it is no record.  Short of descriptors, retried with the backoff of /proc's reads.

    Raises:
        Exhausted: no descriptor to open it with, through every retry.
        OSError: it cannot be opened for another reason (EACCES, EIO).
    """
    try:
        fd = _retrying(partial(open_regular, flags=os.O_RDONLY), path, config)
    except FileNotFoundError:
        return None  # another daemon ended it meanwhile
    except NotRegularFile:
        return None  # a FIFO, a directory...: no daemon made it, not ours to remove
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        with contextlib.suppress(OSError):  # a symbolic link is never a record
            os.unlink(path)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # its daemon is alive (or another one is ending it now)
    except BaseException:
        os.close(fd)
        raise
    return fd


def end_dead(state_dir: str, own_id: str, config: SupervisionConfig) -> list[Ended]:
    """Every record of `candidates`, swept `BATCH` at a time to the end (blocking): what the
    daemon does at start, without stopping when it stops (executor/daemon/serve.py).

    Raises:
        Exhausted: no descriptor to list the directory with.
        OSError: the directory could not be listed (other than not being there).
    """
    ids = candidates(state_dir, own_id, config)
    ended: list[Ended] = []
    for start in range(0, len(ids), BATCH):
        swept = sweep(state_dir, ids[start : start + BATCH], config)
        ended += swept.ended
        if swept.exhausted is not None:  # the rest stays, each said unchecked
            done = {each.daemon_id for each in swept.ended}
            ended += [Ended(i, [], swept.exhausted) for i in ids[start:] if i not in done]
            break
    return ended
