"""Reading process facts from /proc: every read has a defined outcome, none raises at random.

Theory of operation: a process can vanish between any two reads, /proc may hide a process
(hidepid, another user's environ) and a daemon short of file descriptors cannot open anything.
So each reader answers:
  * gone (ENOENT, ESRCH), not ours to read (EACCES, EPERM), or unreadable/garbled content:
    None, an empty set or False: the process cannot be seen, and so cannot be attributed;
  * no descriptor to read with (EMFILE, ENFILE, ENOMEM): `ProcfsExhausted`, a transient error
    that callers retry with a bounded backoff (signalling.drive, the reaper, leftovers).  What
    needs no descriptor — killpg(), kill(), waiting on an open pidfd — still works meanwhile.
"""

from __future__ import annotations

import errno
import os
import platform

import attrs

from cc_executor.supervision.errors import SupervisionError

PROC = "/proc"
# The errors of an open that fails for want of a descriptor (or the memory for one): transient.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})


class ProcfsExhausted(SupervisionError):
    """/proc could not be read for want of a file descriptor (or memory); try again later."""

    def __init__(self, path: str, error: OSError) -> None:
        super().__init__(f"cannot read {path}: {error.strerror or error}")
        self.errno = error.errno


_READ_SIZE = 1 << 16


def _read(path: str) -> bytes | None:
    """A /proc file's content, or None if it cannot be read (see the module docstring).

    Read with os.open and os.read to the end: a buffered file object costs more to make than
    the read (12 against 8 us for a stat file), and every ending run reads several."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in EXHAUSTED:
            raise ProcfsExhausted(path, exc) from None
        return None
    try:
        chunks = []
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
    except OSError as exc:  # gone meanwhile (ESRCH), or its content not ours to read
        if exc.errno in EXHAUSTED:
            raise ProcfsExhausted(path, exc) from None
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)  # one chunk: that chunk itself, no copy


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        if exc.errno in EXHAUSTED:
            raise ProcfsExhausted(path, exc) from None
        return []


@attrs.frozen
class ProcStat:
    """The fields of /proc/<pid>/stat that supervision needs."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    start_ticks: int  # clock ticks after boot at which the process started

    @property
    def is_zombie(self) -> bool:
        # 'X' (dead) is only ever seen in the instant before the entry disappears.
        return self.state in ("Z", "X")


def parse_stat(pid: int, raw: bytes) -> ProcStat | None:
    """The fields of a stat line, or None if it is not one."""
    # comm (field 2) may contain spaces and parentheses: the fields we want follow the last ')'.
    close = raw.rfind(b")")
    fields = raw[close + 2 :].split() if close >= 0 else []
    try:
        return ProcStat(
            pid=pid,
            state=fields[0].decode("ascii"),
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            session=int(fields[3]),
            start_ticks=int(fields[19]),  # field 22 of stat; these start at field 3
        )
    except (IndexError, ValueError):
        return None


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat fields, or None if it cannot be seen (gone, hidden, garbled).

    Raises:
        ProcfsExhausted: no file descriptor to read with.
    """
    raw = _read(f"{PROC}/{pid}/stat")
    return None if raw is None else parse_stat(pid, raw)


def children(pid: int) -> set[int]:
    """Direct children of every thread of `pid` (empty if it is gone).

    Raises:
        ProcfsExhausted: no file descriptor to read with.
    """
    result: set[int] = set()
    for tid in _listdir(f"{PROC}/{pid}/task"):
        raw = _read(f"{PROC}/{pid}/task/{tid}/children")
        if raw is not None:
            result |= _pids(raw)
    return result


def leader_children(pid: int) -> set[int]:
    """Direct children of the first thread of `pid` (its thread-group leader) only.

    The kernel reparents an orphan to the first live thread of its subreaper, the leader (for
    as long as it lives); a child another thread started stays that thread's.  For a daemon
    whose event loop runs on a second thread, this is every orphan it adopted and none of its
    runs' roots, at a cost that does not grow with the number of runs.

    Raises:
        ProcfsExhausted: no file descriptor to read with.
    """
    raw = _read(f"{PROC}/{pid}/task/{pid}/children")
    return set() if raw is None else _pids(raw)


def _pids(raw: bytes) -> set[int]:
    fields = raw.split()
    try:
        return set(map(int, fields))  # the kernel writes decimal pids and spaces
    except ValueError:
        return {int(c) for c in fields if c.isdigit()}


def environ_contains(pid: int, entry: bytes) -> bool:
    """True if `entry` (b"NAME=value") is one of the process's initial environment entries.

    False when the environment cannot be read (gone, or not ours: setuid / non-dumpable).

    Raises:
        ProcfsExhausted: no file descriptor to read with.
    """
    environ = _read(f"{PROC}/{pid}/environ")
    return environ is not None and b"\0" + entry + b"\0" in b"\0" + environ


def read_environ(pid: int) -> bytes | None:
    """The process's initial environment (NUL-separated entries), or None when it cannot be
    read (gone, or not ours: setuid / non-dumpable).

    Raises:
        ProcfsExhausted: no file descriptor to read with.
    """
    return _read(f"{PROC}/{pid}/environ")


def environ_names_var(pid: int, name: bytes) -> bool | None:
    """Whether some initial environment entry of the process is `name` (b"NAME") with any
    value; None when the environment cannot be read (gone, or not ours).

    Raises:
        ProcfsExhausted: no file descriptor to read with.
    """
    environ = _read(f"{PROC}/{pid}/environ")
    if environ is None:
        return None
    return b"\0" + name + b"=" in b"\0" + environ


def all_pids() -> list[int]:
    """Every process id currently listed in /proc.

    Raises:
        ProcfsExhausted: no file descriptor to read with.
    """
    return [int(name) for name in _listdir(PROC) if name.isdigit()]


# Where a vfork() parent waits for its child to exec or exit (/proc/<pid>/wchan), and the
# syscalls it waits inside (/proc/<pid>/syscall), for kernels that hide wchan.
_VFORK_WCHANS = frozenset({"kernel_clone", "wait_for_vfork_done", "_do_fork", "do_fork"})
_VFORK_SYSCALLS = {"x86_64": frozenset({56, 58, 435}), "aarch64": frozenset({220, 435})}.get(
    platform.machine(), frozenset()
)


def in_vfork_wait(pid: int) -> bool:
    """True when the process is blocked in vfork() until its child execs or exits.

    Shells such as dash vfork external commands.  If SIGSTOP reaches the child between vfork
    and exec, the parent stays in state D, unable to run until the child moves: it is frozen,
    though /proc never shows it as stopped.
    """
    wchan = _read(f"{PROC}/{pid}/wchan")
    if wchan is not None and wchan.decode(errors="replace") in _VFORK_WCHANS:
        return True
    syscall = _read(f"{PROC}/{pid}/syscall")
    number = b"" if syscall is None else syscall.split(b" ", 1)[0]
    return number.isdigit() and int(number) in _VFORK_SYSCALLS
