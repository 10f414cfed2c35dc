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
(`end_dead`).  One whose lock it can take is a daemon that is gone: every live process
carrying its id, and every process descending from one and started after it, is SIGKILLed
(supervision/leftovers.py `kill_marked`), then the record is removed.  A record whose lock is
held is a live daemon sharing the directory, and is left alone.  Only the marker proves: a pid,
group or session may have been reused since the crash, and a process that emptied its
environment and left its parent (``setsid env -i``) is not found (docs/operations.md).

A record is made under ``<id>.lock.creating`` and linked once locked (journal_config
``create_locked``), so a daemon sharing the directory never finds one unlocked while its owner
lives; an abandoned ``.creating`` (its maker died in those microseconds, before any run) is
removed like a journal's.  On a graceful exit (`release`), once every run has ended, whatever
still carries the daemon's id — nothing, unless a process escaped every ladder — is killed, and
the record removed; a record that cannot be made (a read-only state directory, EACCES, no inode
left) is logged (``daemon.record_failed``) and the daemon serves all the same: then a crash of
it leaves its runs' processes as before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import time

import attrs

from cc_executor.supervision import SupervisionConfig
from cc_executor.supervision.journal_config import CREATING, create_locked, remove_if_abandoned
from cc_executor.supervision.leftovers import kill_marked
from cc_executor.supervision.marker import daemon_entry
from cc_executor.supervision.procfs import ProcfsExhausted

SUFFIX = ".lock"
DIRECTORY = "daemons"


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
    def claim(cls, state_dir: str) -> DaemonRecord:
        """A new id and its record, locked by this process until `release` (blocking: at
        start, before any run).  Never raises: a record that cannot be made says why."""
        daemon_id = secrets.token_hex(16)
        directory = directory_of(state_dir)
        path = os.path.join(directory, daemon_id + SUFFIX)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = create_locked(path, b"")
        except OSError as exc:
            return cls(daemon_id, path, None, f"{path}: {exc.strerror or exc}")
        return cls(daemon_id, path, fd)

    def release(self, config: SupervisionConfig) -> list[int] | ProcfsExhausted:
        """At a graceful exit, after every run ended: kill what still carries the id, then
        remove the record (blocking).  Returns the pids killed; or, when /proc could not be
        read, the error, and the record stays (unlocked) for the next start to use."""
        try:
            killed: list[int] | ProcfsExhausted = kill_marked(
                daemon_entry(self.daemon_id), config=config
            )
        except ProcfsExhausted as exc:
            killed = exc
        if self.fd is not None:
            if not isinstance(killed, ProcfsExhausted):
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            os.close(self.fd)
            self.fd = None
        return killed


@attrs.frozen
class Ended:
    """What `end_dead` did with one dead daemon's record: the pids it killed, or why it could
    not look (the record then stays for a later start)."""

    daemon_id: str
    killed: list[int]
    error: str | None = None


def end_dead(state_dir: str, own_id: str, config: SupervisionConfig) -> list[Ended]:
    """End the runs of every daemon whose record is not locked (the module docstring), and
    remove their records (blocking: a worker thread's).

    Raises:
        OSError: the directory could not be listed (other than not being there).
    """
    directory = directory_of(state_dir)
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):  # none (claim said why if it could not)
        return []
    now = time.time()
    ended: list[Ended] = []
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(SUFFIX + CREATING):
            with contextlib.suppress(OSError):
                remove_if_abandoned(path, now)
            continue
        daemon_id = name[: -len(SUFFIX)]
        if not name.endswith(SUFFIX) or daemon_id == own_id:
            continue
        outcome = _end_one(path, daemon_id, config)
        if outcome is not None:
            ended.append(outcome)
    return ended


def _end_one(path: str, daemon_id: str, config: SupervisionConfig) -> Ended | None:
    """One record: None if its daemon lives (or it is gone already)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None  # another daemon ended it meanwhile
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symbolic link is never a record
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return Ended(daemon_id, [], f"{path}: {exc.strerror or exc}")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its daemon is alive (or another one is ending it now)
        try:
            killed = kill_marked(daemon_entry(daemon_id), config=config)
        except ProcfsExhausted as exc:
            return Ended(daemon_id, [], str(exc))
        with contextlib.suppress(OSError):  # gone already; or a directory of that name
            os.unlink(path)
        return Ended(daemon_id, killed)
    finally:
        os.close(fd)
