"""The cancel ladder, timeouts and aborted runners: nothing of a run survives, no zombies."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest
import trio
import trio.testing

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import RunState
from cc_executor.supervision.outcome import Cancelled, Exited, Rung, Signalled, TimedOut
from cc_executor.supervision.reaper import enable_subreaper
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import (
    Recorder,
    marked_processes,
    process_state,
    process_tree_argv,
    python_argv,
    run_to_completion,
    start_run,
    wait_for_tree,
)

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def assert_gone(pids: dict[str, int]) -> None:
    # A zombie is dead; zombies that are ours to reap are checked by the no_leftovers fixture
    # (without the subreaper, orphans belong to init, which reaps them in its own time).
    assert all(process_state(pid) in (None, "Z") for pid in pids.values()), pids


@pytest.mark.parametrize("subreaper", [True, False], ids=["subreaper", "no-subreaper"])
async def test_cancel_plain_tree_with_escapes_ends_on_sigterm(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str], subreaper: bool
) -> None:
    if not subreaper:
        # Orphans then go to init: only the full /proc scan (by marker) can find them.
        enable_subreaper(False)
    recorder = Recorder()
    rid = run_id()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(process_tree_argv(), ENV, rid), config, registry, recorder
            )
            pids = await wait_for_tree(recorder)
            assert set(pids.values()) <= run.members()
            assert await run.cancel("user asked") is Rung.SIGTERM
            assert_gone(pids)
    assert run.outcome == Cancelled("user asked", Rung.SIGTERM, Signalled(signal.SIGTERM))
    assert run.state is RunState.COMPLETED
    assert not marked_processes(rid)
    assert rid not in registry


async def test_grandchild_ignoring_sigterm_is_killed(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    spec = SpawnSpec(process_tree_argv(grandchild_ignores_term=True), ENV, run_id())
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(nursery, spec, config, registry, recorder)
            pids = await wait_for_tree(recorder)
            assert await run.cancel("stop") is Rung.SIGKILL
            assert_gone(pids)
    # The root itself went on SIGTERM; the rung is the one that ended the whole run.
    assert run.outcome == Cancelled("stop", Rung.SIGKILL, Signalled(signal.SIGTERM))


async def test_paused_tree_is_continued_so_sigterm_works(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(process_tree_argv(), ENV, run_id()), config, registry, recorder
            )
            pids = await wait_for_tree(recorder)
            await run.pause()
            assert await run.cancel("first") is Rung.SIGTERM
            assert_gone(pids)
    assert run.outcome == Cancelled("first", Rung.SIGTERM, Signalled(signal.SIGTERM))


async def wait_stopped(pids: dict[str, int]) -> None:
    while not all(process_state(pid) == "T" for pid in pids.values()):  # noqa: ASYNC110 - /proc only
        await trio.sleep(0.01)


async def test_a_tree_stopped_from_outside_is_continued_so_sigterm_works(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    # Not a PAUSE: someone else stops every process (a real SIGSTOP, as `kill -STOP` or a
    # debugger would), so the run's state says running.  SIGTERM alone would stay pending
    # through the grace; the ladder continues what it signals, so the tree goes at SIGTERM.
    recorder = Recorder()
    rid = run_id()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(process_tree_argv(), ENV, rid), config, registry, recorder
            )
            pids = await wait_for_tree(recorder)
            for pid in pids.values():
                os.kill(pid, signal.SIGSTOP)
            await wait_stopped(pids)
            assert run.state is RunState.RUNNING
            assert await run.cancel("stop") is Rung.SIGTERM
            assert_gone(pids)
    assert run.outcome == Cancelled("stop", Rung.SIGTERM, Signalled(signal.SIGTERM))
    assert not marked_processes(rid)


async def test_second_cancel_joins_the_ladder_in_progress(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    spec = SpawnSpec(process_tree_argv(grandchild_ignores_term=True), ENV, run_id())
    rungs: list[Rung] = []

    async def cancel(reason: str) -> None:
        rungs.append(await run.cancel(reason))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(nursery, spec, config, registry, recorder)
            await wait_for_tree(recorder)
            async with trio.open_nursery() as cancels:
                cancels.start_soon(cancel, "first")
                # The ladder now waits out term_grace for the grandchild that ignores SIGTERM.
                await trio.testing.wait_all_tasks_blocked()
                assert run.state is RunState.ENDING
                cancels.start_soon(cancel, "second")
    assert rungs == [Rung.SIGKILL, Rung.SIGKILL]
    assert run.outcome == Cancelled("first", Rung.SIGKILL, Signalled(signal.SIGTERM))


async def test_leftovers_are_ended_when_the_root_exits(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    # The background sleeper keeps stdout open; it must not outlive the run.
    spec = SpawnSpec(("sh", "-c", "sleep 1000 & echo $!; exit 4"), ENV, run_id())
    with trio.fail_after(30):
        outcome = await run_to_completion(spec, config, registry, recorder)
    assert outcome == Exited(4)
    assert process_state(int(recorder.output())) is None


@pytest.mark.parametrize("kind", ["absolute", "idle"])
async def test_timeouts(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str], kind: str
) -> None:
    # Output keeps flowing, so only the absolute timeout can fire in the first case; silence
    # after one line lets the idle timeout fire in the second.
    code = (
        "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)"
        if kind == "absolute"
        else "import time\nprint('once', flush=True)\ntime.sleep(1000)"
    )
    limits = {"timeout": 0.3} if kind == "absolute" else {"idle_timeout": 0.3, "timeout": 20.0}
    with trio.fail_after(30):
        outcome = await run_to_completion(
            SpawnSpec(python_argv(code), ENV, run_id()), config, registry, Recorder(), **limits
        )
    assert outcome == TimedOut(kind, Rung.SIGTERM, Signalled(signal.SIGTERM))  # type: ignore[arg-type]


async def test_idle_clock_stops_while_paused(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    code = "import sys, time\nprint('up', flush=True)\nsys.stdin.read()\nprint('done')"
    spec = SpawnSpec(python_argv(code), ENV, run_id(), stdin="pipe")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(nursery, spec, config, registry, recorder, idle_timeout=0.3)
            await recorder.wait_for_output(b"up\n")
            await run.pause()
            await trio.sleep(0.6)  # longer than the idle timeout: a paused run is not idle
            assert run.state is RunState.PAUSED
            await run.resume()
            await run.close_stdin()
    assert run.outcome == Exited(0)
    assert recorder.output() == b"up\ndone\n"


async def test_runner_cancelled_from_outside_kills_the_tree(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    spec = SpawnSpec(process_tree_argv(grandchild_ignores_term=True), ENV, run_id())
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(nursery, spec, config, registry, recorder)
            pids = await wait_for_tree(recorder)
            nursery.cancel_scope.cancel()  # e.g. the client went away
    assert_gone(pids)
    assert isinstance(run.outcome, Cancelled)
    assert run.outcome.rung is Rung.SIGKILL
    assert run.state is RunState.COMPLETED
    assert len(registry) == 0
    with trio.fail_after(5):
        assert await run.wait() == run.outcome
