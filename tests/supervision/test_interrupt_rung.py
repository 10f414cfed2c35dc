"""The optional interrupt rung: SIGINT to the group first, then the usual ladder."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import attrs
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.outcome import Cancelled, Exited, Rung, Signalled
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import (
    Recorder,
    marked_processes,
    process_state,
    process_tree_argv,
    python_argv,
    start_run,
    wait_for_tree,
)

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

# Cleans up on SIGINT the way Claude Code does: says so, then exits 0.
_POLITE = """
import os, signal, sys, time
def on_int(*_):
    os.write(1, b"interrupted\\n")
    os._exit(0)
signal.signal(signal.SIGINT, on_int)
os.write(1, b"ready\\n")
while True:
    time.sleep(1000)
"""


async def test_a_run_that_handles_sigint_ends_on_the_interrupt_rung(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    config = attrs.evolve(config, interrupt_grace=5.0)
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(python_argv(_POLITE), ENV, run_id()), config, registry, recorder
            )
            await recorder.wait_for_output(b"ready\n")
            assert await run.cancel("stop") is Rung.SIGINT
    assert run.outcome == Cancelled("stop", Rung.SIGINT, Exited(0))
    assert recorder.output() == b"ready\ninterrupted\n"


async def test_sigint_goes_to_the_group_and_the_ladder_sweeps_what_is_left(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    # The tree's processes that left the group never see the SIGINT (a terminal's Ctrl-C
    # would not reach them either); the SIGTERM rung, with its sweep, ends them.
    config = attrs.evolve(config, interrupt_grace=0.5)
    recorder = Recorder()
    rid = run_id()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(process_tree_argv(), ENV, rid), config, registry, recorder
            )
            pids = await wait_for_tree(recorder)
            assert await run.cancel("stop") is Rung.SIGTERM
    assert all(process_state(pid) in (None, "Z") for pid in pids.values())
    assert run.outcome == Cancelled("stop", Rung.SIGTERM, Signalled(signal.SIGINT))
    assert not marked_processes(rid)


async def test_a_paused_run_is_continued_to_act_on_sigint(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    config = attrs.evolve(config, interrupt_grace=5.0)
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(python_argv(_POLITE), ENV, run_id()), config, registry, recorder
            )
            await recorder.wait_for_output(b"ready\n")
            await run.pause()
            assert await run.cancel("stop") is Rung.SIGINT
    assert run.outcome == Cancelled("stop", Rung.SIGINT, Exited(0))


async def test_a_run_stopped_from_outside_is_continued_to_act_on_sigint(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    # A real SIGSTOP from someone else, not a PAUSE: the SIGINT rung still lets it clean up.
    config = attrs.evolve(config, interrupt_grace=5.0)
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(python_argv(_POLITE), ENV, run_id()), config, registry, recorder
            )
            await recorder.wait_for_output(b"ready\n")
            (pid,) = run.members()
            os.kill(pid, signal.SIGSTOP)
            while process_state(pid) != "T":  # noqa: ASYNC110 - no event exists for /proc
                await trio.sleep(0.01)
            assert await run.cancel("stop") is Rung.SIGINT
    assert run.outcome == Cancelled("stop", Rung.SIGINT, Exited(0))
    assert recorder.output() == b"ready\ninterrupted\n"
