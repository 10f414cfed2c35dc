"""Real file-descriptor exhaustion (EMFILE) while runs pause, are cancelled and end.

Observed on main: under ``prlimit --nofile=256`` with 400 clients connecting while a durable
run ended, an EMFILE from reading /proc (procfs.read_stat caught only FileNotFoundError and
ProcessLookupError) escaped the runner, which lives in the daemon's nursery, and the daemon
exited.  Here the test process itself runs out: its soft RLIMIT_NOFILE is lowered and every
descriptor under it taken, so each /proc read really fails with EMFILE.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing
from ccx_testing import alive, wait_until
from faults_journal_testing import descriptors_exhausted

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import ControlTimeout, SpawnError
from cc_executor.supervision.events import RunState
from cc_executor.supervision.outcome import Cancelled, Exited
from cc_executor.supervision.reaper import enable_subreaper, run_reaper
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.run import Run
from cc_executor.supervision.spawn import SpawnSpec, spawn
from cc_executor.supervision.testing import (
    Recorder,
    process_state,
    python_argv,
    start_run,
    zombie_children,
)

ENV = {"PATH": "/usr/bin:/bin"}
CONFIG = SupervisionConfig(term_grace=0.5, kill_wait=1.0, control_timeout=0.5, drain_timeout=1.0)
TREE = python_argv(
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    time.sleep(120)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def state_of(run: Run) -> RunState:
    """The run's state now (a function: mypy would keep an earlier narrowing)."""
    return run.state


async def test_pause_retries_then_cancel_ends_the_run_without_descriptors() -> None:
    registry = RunRegistry()
    recorder = Recorder()
    assert enable_subreaper()
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                run = await start_run(
                    nursery,
                    SpawnSpec(argv=TREE, env=ENV, run_id="emfile-1"),
                    CONFIG,
                    registry,
                    recorder,
                )
                await recorder.wait_for_output(b"ready\n")
                members = run.members()
                assert len(members) == 2
                await nursery.start(run_reaper, registry)  # as the daemon's
                with contextlib.ExitStack() as stack:
                    stack.enter_context(descriptors_exhausted())
                    async with trio.open_nursery() as pausing:
                        pausing.start_soon(run.pause)
                        # The pause reads /proc, gets EMFILE, and backs off (nothing escapes).
                        await trio.testing.wait_all_tasks_blocked()
                        assert run.state is RunState.RUNNING
                        stack.close()  # descriptors come back: the next retry confirms
                assert state_of(run) is RunState.PAUSED
                assert all(process_state(pid) in ("t", "T") for pid in members)
                with descriptors_exhausted():
                    # A paused run cancelled with no descriptor at all: the ladder signals the
                    # group (killpg needs none), cannot confirm, escalates, reaps the root.
                    rung = await run.cancel("cancelled under EMFILE")
                outcome = await run.wait()
                # The killed child died unseen (no /proc): the reaper's pass failed for want
                # of a descriptor and is retried; with descriptors back it collects the zombie.
                await wait_until(lambda: not zombie_children() & members)
                nursery.cancel_scope.cancel()
        assert isinstance(outcome, Cancelled)
        assert outcome.reason == "cancelled under EMFILE"
        assert outcome.rung is rung
        assert recorder.completed is not None
        assert not any(alive(pid) for pid in members)
    finally:
        enable_subreaper(False)


async def test_cancel_and_natural_exit_complete_while_descriptors_are_exhausted() -> None:
    registry = RunRegistry()
    assert enable_subreaper()
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                cancelled = Recorder()
                run = await start_run(
                    nursery,
                    SpawnSpec(argv=TREE, env=ENV, run_id="emfile-2"),
                    CONFIG,
                    registry,
                    cancelled,
                )
                exiting = Recorder()
                exit_argv = python_argv(
                    "import sys\nprint('ready', flush=True)\nsys.stdin.read()\nsys.exit(3)"
                )
                piped = SpawnSpec(argv=exit_argv, env=ENV, run_id="emfile-3", stdin="pipe")
                natural = await start_run(nursery, piped, CONFIG, registry, exiting)
                await cancelled.wait_for_output(b"ready\n")
                await exiting.wait_for_output(b"ready\n")
                members = run.members() | natural.members()
                await nursery.start(run_reaper, registry)  # as the daemon's
                with descriptors_exhausted():
                    # Unconfirmable: a clear error naming the group, the group continued.
                    with pytest.raises(ControlTimeout) as unconfirmed:
                        await run.pause()
                    assert unconfirmed.value.not_stopped == [run.pgid]
                    assert run.state is RunState.RUNNING
                    rung = await run.cancel("cancelled under EMFILE")
                    await natural.close_stdin()  # it exits 3 on its own
                    assert await natural.wait() == Exited(3)
                assert rung is not None
                outcome = await run.wait()
                assert isinstance(outcome, Cancelled)
                assert outcome.reason == "cancelled under EMFILE"
                await wait_until(lambda: not zombie_children() & members)  # as above
                nursery.cancel_scope.cancel()
        assert cancelled.completed is not None
        assert exiting.completed is not None
        assert exiting.completed.outcome == Exited(3)
        assert not any(alive(pid) for pid in members)
    finally:
        enable_subreaper(False)


async def test_spawning_without_descriptors_is_a_spawn_error() -> None:
    """The run's pipes cannot be made: a SpawnError the caller reports (-32006), never a raw
    OSError that would fail the connection asking."""
    refused = pytest.raises(SpawnError, match="cannot make the run's pipes")
    with trio.fail_after(30), descriptors_exhausted(), refused:
        await spawn(SpawnSpec(("true",), ENV, "svemfile-spawn"), CONFIG)


def escaping(then: str) -> tuple[str, ...]:
    """A run whose child leaves its session (as Claude Code's Bash tool does: only /proc finds
    it), says its pid, and then does `then`."""
    return python_argv(
        "import os, sys, time\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(120)\n"
        "    os._exit(0)\n"
        "print('escaped', child, flush=True)\n"
        f"{then}\n"
    )


ESCAPING = escaping("time.sleep(120)")


async def escaped_pid(recorder: Recorder) -> int:
    await recorder.wait_for_output(b"\n")
    return int(bytes(recorder.output("stdout")).split()[1])


async def test_a_descendant_that_left_the_group_unseen_is_killed_once_descriptors_return() -> None:
    """Observed on main: a CANCEL (and a run ending) while the daemon has no descriptor left
    signals the process group only; a descendant that called setsid() is outside it, the
    ladder cannot see it, and it was left running for good — after descriptors came back, and
    after the daemon exited (prlimit --nofile on a live daemon, `sh -c 'setsid sleep 300 &
    ...'`).  Now the run still completes, and what the ladder could not confirm is swept by
    the reaper (by the run's marker) as soon as /proc can be read again."""
    registry = RunRegistry()
    assert enable_subreaper()
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(run_reaper, registry)  # as the daemon's
                cancelled, exiting = Recorder(), Recorder()
                run = await start_run(
                    nursery,
                    SpawnSpec(argv=ESCAPING, env=ENV, run_id="emfile-5"),
                    CONFIG,
                    registry,
                    cancelled,
                )
                exits = escaping("sys.stdin.read()")
                piped = SpawnSpec(argv=exits, env=ENV, run_id="emfile-6", stdin="pipe")
                natural = await start_run(nursery, piped, CONFIG, registry, exiting)
                escapees = {await escaped_pid(cancelled), await escaped_pid(exiting)}
                assert all(alive(pid) for pid in escapees)
                with descriptors_exhausted():
                    await run.cancel("cancelled under EMFILE")
                    await natural.close_stdin()  # its root exits, its escapee stays
                    assert isinstance(await run.wait(), Cancelled)
                    assert await natural.wait() == Exited(0)
                await wait_until(lambda: not any(alive(pid) for pid in escapees), bound=30)
                nursery.cancel_scope.cancel()
    finally:
        enable_subreaper(False)
