"""Reading process facts from /proc; every reader tolerates the process vanishing mid-read."""

from __future__ import annotations

import os

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
