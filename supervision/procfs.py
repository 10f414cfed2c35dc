"""Reading process facts from /proc; every reader tolerates the process vanishing mid-read."""

from __future__ import annotations

import os
import platform

import attrs

PROC = "/proc"


@attrs.frozen
class ProcStat:
    """The fields of /proc/<pid>/stat that supervision needs."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int

    @property
    def is_zombie(self) -> bool:
        # 'X' (dead) is only ever seen in the instant before the entry disappears.
        return self.state in ("Z", "X")


def read_stat(pid: int) -> ProcStat | None:
    """Return the process's stat fields, or None if it no longer exists."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: the fields we want follow the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return ProcStat(
        pid=pid,
        state=fields[0].decode("ascii"),
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
    )


def children(pid: int) -> set[int]:
    """Direct children of every thread of `pid` (empty if it is gone)."""
    result: set[int] = set()
    try:
        tids = os.listdir(f"{PROC}/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return result
    for tid in tids:
        try:
            with open(f"{PROC}/{pid}/task/{tid}/children", "rb") as f:
                result.update(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return result


def environ_contains(pid: int, entry: bytes) -> bool:
    """True if `entry` (b"NAME=value") is one of the process's initial environment entries."""
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as f:
            environ = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        # Gone, or not ours to inspect (setuid / non-dumpable): cannot be attributed this way.
        return False
    return b"\0" + entry + b"\0" in b"\0" + environ


def all_pids() -> list[int]:
    """Every process id currently listed in /proc."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


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
    try:
        with open(f"/proc/{pid}/wchan", "rb") as f:
            if f.read().decode(errors="replace") in _VFORK_WCHANS:
                return True
        with open(f"/proc/{pid}/syscall", "rb") as f:
            number = f.read().split(b" ", 1)[0]
    except OSError:
        return False
    return number.isdigit() and int(number) in _VFORK_SYSCALLS
