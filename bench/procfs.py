"""What /proc says about a process: memory, CPU time, state, and the members of a group."""

from __future__ import annotations

import os
import re
import resource

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def rss_kib(pid: int) -> int:
    """Resident set size now."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """Peak resident set size since start or the last `reset_peak_rss`."""
    return _status_kib(pid, "VmHWM")


def reset_peak_rss(pid: int) -> None:
    """Make VmHWM start again from the current RSS (proc(5): clear_refs, value 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def _schedstat(pid: int, field: int) -> float:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[field])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of `pid`, from schedstat (nanoseconds)."""
    return _schedstat(pid, 0)


def runqueue_seconds(pid: int) -> float:
    """Time the threads of `pid` were runnable but waiting for a CPU (schedstat)."""
    return _schedstat(pid, 1)


def self_cpu_seconds() -> float:
    """This process's user + system CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live pids whose process group is `pgid`."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = stat(int(name))
            if info is not None and info[2] == pgid and info[0] != "Z":
                members.append(int(name))
    return members


def all_stopped(pids: list[int]) -> bool:
    """True when every listed process is in the stopped state (T) or gone."""
    for pid in pids:
        info = stat(pid)
        if info is not None and info[0] not in ("T", "t"):
            return False
    return True
