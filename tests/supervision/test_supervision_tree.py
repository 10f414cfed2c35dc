"""Membership, the SIGCHLD reaper, and framing helpers."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import pytest
import trio

from cc_executor.supervision import procfs
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.framing import incomplete_utf8_tail, utf8_safe_cut
from cc_executor.supervision.outcome import Exited
from cc_executor.supervision.reaper import is_subreaper, run_reaper, sweep_unowned
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import (
    Recorder,
    process_state,
    python_argv,
    run_to_completion,
    start_run,
    zombie_children,
)
from cc_executor.supervision.tree import run_members, scan_run

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def test_reaper_reaps_orphans_but_not_roots(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    assert is_subreaper()
    recorder = Recorder()
    code = (
        "import os, sys, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    if os.fork() == 0:\n"
        "        os.write(1, b'orphan %d\\n' % os.getpid())\n"
        "        time.sleep(1000)\n"  # until the test's SIGUSR1 ends it
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "sys.stdin.buffer.read()\n"
    )
    spec = SpawnSpec(python_argv(code), ENV, run_id(), stdin="pipe")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_reaper, registry)
            run = await start_run(nursery, spec, config, registry, recorder)
            await recorder.wait_for_output(b"\n")
            orphan = int(recorder.output().split()[1])
            # Reparented to us (the subreaper), and still attributed to the run.
            assert orphan in procfs_children()
            assert orphan in run_members(run.pid, run.pgid, run.run_id)
            os.kill(orphan, signal.SIGUSR1)  # the orphan dies; the reaper must collect it
            # No event says "reaped": poll /proc, bounded by fail_after.
            while orphan in procfs_children():  # noqa: ASYNC110
                await trio.sleep(config.state_poll_max)  # bounded by fail_after
            assert process_state(orphan) is None
            assert process_state(run.pid) not in (None, "Z")  # the root was left alone
            await run.close_stdin()
            await run.wait()
            nursery.cancel_scope.cancel()
    assert not zombie_children()


def procfs_children() -> set[int]:
    return procfs.children(os.getpid())


async def test_scan_reports_zombies_apart(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    # The root's child exits and is never waited for: a zombie member.
    code = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os._exit(0)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()"
    )
    spec = SpawnSpec(python_argv(code), ENV, run_id(), stdin="pipe")
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(nursery, spec, config, registry, recorder)
            await recorder.wait_for_output(b"ready\n")
            while not scan_run(run.pid, run.pgid, run.run_id).zombies:  # noqa: ASYNC110
                await trio.sleep(config.state_poll_max)  # the kernel reports it; bounded
            membership = scan_run(run.pid, run.pgid, run.run_id, full=True)
            assert membership.live == {run.pid}
            assert len(membership.zombies) == 1
            await run.close_stdin()


def test_utf8_helpers() -> None:
    euro = "€".encode()  # 3 bytes
    data = b"ab" + euro + b"c"
    assert utf8_safe_cut(data, 3) == 2
    assert utf8_safe_cut(data, 4) == 2
    assert utf8_safe_cut(data, 5) == 5
    assert utf8_safe_cut(b"\x80\x80\x80\x80\x80", 4) == 4
    assert incomplete_utf8_tail(b"ab" + euro[:2]) == 2
    assert incomplete_utf8_tail(b"ab" + euro) == 0
    assert incomplete_utf8_tail(b"") == 0


async def test_registry_roots_follow_spawn_and_reaping(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    # Two real runs: both roots are protected (the reaper skips them, scans never attribute
    # one to the other) until each runner reaps its own, and then that pid is no root at all.
    code = "import sys\nprint('ready', flush=True)\nsys.stdin.read()"
    first, second = Recorder(), Recorder()

    def spec() -> SpawnSpec:
        return SpawnSpec(python_argv(code), ENV, run_id(), stdin="pipe")

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = [
                await start_run(nursery, spec(), config, registry, recorder)
                for recorder in (first, second)
            ]
            await first.wait_for_output(b"ready\n")
            await second.wait_for_output(b"ready\n")
            assert registry.root_pids() == {a.pid, b.pid}
            assert {a.pid, b.pid} <= procfs_children()
            # Each scan finds its own root and never the other's, with every root in `roots`.
            roots = registry.unreaped_roots()
            assert scan_run(a.pid, a.pgid, a.run_id, roots=roots).live == {a.pid}
            assert scan_run(b.pid, b.pgid, b.run_id, roots=roots, full=True).live == {b.pid}
            await a.close_stdin()
            await a.wait()
            assert a.root_reaped
            assert not registry.is_root(a.pid)
            assert registry.root_pids() == {b.pid}
            assert a.members() == set()
            assert b.members() == {b.pid}
            await b.close_stdin()
            await b.wait()
    assert registry.root_pids() == frozenset()
    assert not zombie_children()


async def test_a_run_that_leaves_nothing_lists_the_daemons_children_once(
    config: SupervisionConfig,
    registry: RunRegistry,
    run_id: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Listing the daemon's children costs O(its children) (a thousand runs at once: ~150 us
    # each time), and every ending run lists them: once for the ladder's scan, and a second
    # time to reap only if that scan saw a dead process of the run (here there is none).
    listings: list[int] = []
    leader_children = procfs.leader_children

    def counted(pid: int) -> set[int]:
        listings.append(pid)
        return leader_children(pid)

    monkeypatch.setattr(procfs, "leader_children", counted)
    with trio.fail_after(30):
        outcome = await run_to_completion(
            SpawnSpec(("true",), ENV, run_id()), config, registry, Recorder()
        )
    assert outcome == Exited(0)
    assert listings == [os.getpid()]


async def test_a_dead_process_of_the_run_is_reaped_by_its_runner(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    # The root's child exits and the root never waits for it: once the root is gone too, the
    # child is the daemon's zombie (the subreaper's).  No reaper task runs here: the runner
    # reaps it, because its ladder's scan saw it dead (no_leftovers checks that no zombie stays).
    code = "import os\nif os.fork() == 0:\n    os._exit(0)\n"
    with trio.fail_after(30):
        outcome = await run_to_completion(
            SpawnSpec(python_argv(code), ENV, run_id()), config, registry, Recorder()
        )
    assert outcome == Exited(0)
    assert not zombie_children()


def _adopt_unmarked_orphan() -> int:
    """A real `sleep` with no marker, in a session of its own, adopted by this process (the
    subreaper) once its parent exits: what `setsid env -i` leaves behind."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked child
        os.setsid()
        grandchild = os.fork()
        if grandchild == 0:
            os.execve("/bin/sh", ["sh", "-c", "exec sleep 1000"], {"PATH": "/usr/bin:/bin"})
        os.write(write_end, b"%d" % grandchild)
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as pipe:
        return int(pipe.read())


async def test_the_sweep_kills_an_unmarked_orphan_once_no_live_run_may_own_it(
    registry: RunRegistry,
) -> None:
    orphan = _adopt_unmarked_orphan()
    try:
        assert orphan in procfs_children()
        stat = procfs.read_stat(orphan)
        assert stat is not None
        # A number reused by another process is not the orphan noted: left alone.
        registry.unowned_seen(orphan, stat.start_ticks + 1)
        assert sweep_unowned(registry)
        assert process_state(orphan) not in (None, "Z")
        assert registry.unowned() == {}
        registry.unowned_seen(orphan, stat.start_ticks)
        assert not sweep_unowned(registry)  # no live run: it was killed
        with trio.fail_after(10):
            while process_state(orphan) not in (None, "Z"):  # noqa: ASYNC110 - /proc only
                await trio.sleep(0.01)
        assert registry.unowned() == {}
    finally:
        _kill_and_reap(orphan)


def _kill_and_reap(pid: int) -> None:
    """End a child of this process and collect it (dead already, or at once after SIGKILL)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
