"""Which processes belong to a run.

Theory of operation: a run is the root process, started in a new session (pgid = sid = root
pid), plus everything it ever started.  Descendants can leave the tree in three ways, and each
has its own net:
  * they stay descendants of the root: walk /proc/<pid>/task/*/children from the root;
  * their parent died: with the daemon as child subreaper they are reparented to the daemon (to
    its first thread, the leader), so the leader's children that are not run roots are
    candidates, attributed by process group, session, or the CCX_RUN_ID=<run_id> entry every
    process of the run inherits.  When the daemon's event loop runs on another thread (``ccx
    serve``), the roots are that thread's children and the leader's are only the orphans: the
    list costs nothing per run; otherwise the roots are among them and are taken off;
  * without the subreaper they go to init: only a full /proc scan (same attribution rules)
    finds them.
Everything found is expanded to its descendants.  Zombies are dead for every purpose except
reaping, so they are reported apart from the live members.

Two nets catch what carries none of those marks: a process that left the group and the session
*and* cleared its environment (``setsid env -i ...``), then lost its parent.  Its position in
the tree was the only evidence, so
  * a run remembers every member a scan found (``known``: pid and start time, so a reused pid
    is never taken for it) and walks from them again: once seen, a member stays the run's
    wherever the kernel moves it — which is why signalling scans before it signals the group
    (signalling.py): the group signal is what ends the parents;
  * an orphan no scan ever saw is handed to ``claim_unmarked`` (Run.members), which decides
    from start times whether only this run can have started it.

Process-id reuse: the pgid/sid rule is only sound while the group's id cannot be reused, which
the kernel guarantees while the root is unreaped (a zombie root pins its pid).  Callers stop
scanning once the root is reaped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet

import attrs

from cc_executor.supervision import procfs
from cc_executor.supervision.marker import RUN_ID_VAR, marker_entry
from cc_executor.supervision.procfs import ProcStat

# Rounds of "read our children, walk what is new"; each round only happens if the last found
# an orphan, so this bounds a pathological tree that keeps escaping while being scanned.
_MAX_PASSES = 4


@attrs.frozen
class Membership:
    """The processes of a run at one instant."""

    live: frozenset[int]
    zombies: frozenset[int]
    # The start time (clock ticks after boot) of each live member: what a later scan checks a
    # remembered pid against (``known``), so that a number reused by another process is not it.
    started: Mapping[int, int] = attrs.field(factory=dict)


def scan_run(
    root_pid: int | None,
    pgid: int,
    run_id: str,
    *,
    roots: AbstractSet[int] = frozenset(),
    full: bool = False,
    known: Mapping[int, int] | None = None,
    claim_unmarked: Callable[[ProcStat], bool] | None = None,
) -> Membership:
    """Find every process of a run.

    Args:
        root_pid: the run's root, or None once it has been reaped (its pid may be reused).
        pgid: the run's process group (= session) id.
        run_id: the run's marker value.
        roots: the unreaped roots of the runs (this one's may be among them): none but
            `root_pid` is ever attributed to this run.
        full: also scan all of /proc, for orphans that were not reparented to this process.
        known: members an earlier scan found (pid: start time, as `Membership.started`);
            each one still alive with that start time is a member again, wherever it is now.
        claim_unmarked: asked about an orphan that carries no run's marker at all and is
            outside the run's group and session: True makes it (and its descendants) members.
    """
    entry = marker_entry(run_id)
    any_marker = RUN_ID_VAR.encode()
    self_pid = os.getpid()

    def belongs(pid: int) -> bool:
        stat = procfs.read_stat(pid)
        if stat is None:
            return False
        if stat.pgrp == pgid or stat.session == pgid or procfs.environ_contains(pid, entry):
            return True
        if claim_unmarked is None or full:  # all of /proc: strangers, not orphans
            return False
        if stat.is_zombie:  # its environment reads empty: no evidence either way
            return False
        # Marked by another run (or unreadable: another user's): not for the guess below.
        return procfs.environ_names_var(pid, any_marker) is False and claim_unmarked(stat)

    live: set[int] = set()
    zombies: set[int] = set()
    started: dict[int, int] = {}

    def walk(seeds: set[int]) -> None:
        stack = list(seeds)
        while stack:
            pid = stack.pop()
            if pid in live or pid in zombies or pid == self_pid:
                continue
            if pid != root_pid and pid in roots:
                continue
            stat = procfs.read_stat(pid)
            if stat is None:
                continue
            if stat.is_zombie:
                zombies.add(pid)
            else:
                live.add(pid)
                started[pid] = stat.start_ticks
            stack.extend(procfs.children(pid))

    # Order matters.  Reparenting only ever moves a process *up*, to this subreaper, so the
    # tree is walked first and the daemon's own children are read after it: a process whose
    # parent dies during the walk is then either under the parent when the parent was read,
    # or among our children when they are read.  (Reading our children first loses exactly
    # the orphans of a parent that dies in between — and SIGTERM makes parents die.)  Each
    # newly attributed orphan's subtree is walked, and our children are read again, until
    # nothing new turns up.  "Our children" are those of our first thread, where every orphan
    # lands (module doc); when the event loop runs on that thread they include other runs'
    # roots (a burst of N runs has up to N), taken off in set operations, not one at a time.
    walk(set() if root_pid is None else {root_pid})
    if known:
        # Those the walk did not reach (a parent died: reparented to us), if still the same
        # processes: a remembered member that is gone may have left its number to another.
        walk({pid for pid, ticks in known.items() if pid not in live and _started(pid) == ticks})
    for _ in range(_MAX_PASSES):
        candidates = set(procfs.all_pids()) if full else procfs.leader_children(self_pid)
        candidates -= live
        candidates -= zombies
        candidates -= roots
        candidates.discard(self_pid)
        new = {pid for pid in candidates if belongs(pid)}
        if not new:
            break
        walk(new)
    return Membership(live=frozenset(live), zombies=frozenset(zombies), started=started)


def _started(pid: int) -> int | None:
    stat = procfs.read_stat(pid)
    return None if stat is None or stat.is_zombie else stat.start_ticks


def run_members(
    root_pid: int | None,
    pgid: int,
    run_id: str,
    *,
    roots: AbstractSet[int] = frozenset(),
    full: bool = False,
) -> set[int]:
    """Every live (non-zombie) process of a run; see scan_run."""
    return set(scan_run(root_pid, pgid, run_id, roots=roots, full=full).live)
