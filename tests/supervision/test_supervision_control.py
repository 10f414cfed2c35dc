"""PAUSE / RESUME / signals / invalid transitions on real process trees."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import ControlTimeout, InvalidTransition
from cc_executor.supervision.events import Output, RunEvent, RunState, SequencedEvent, StateEvent
from cc_executor.supervision.outcome import Cancelled, Exited, Rung, Signalled
from cc_executor.supervision.pump import OutputPump
from cc_executor.supervision.reaper import reap_orphans
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.runner import run_process
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.states import Action, next_state
from cc_executor.supervision.testing import (
    Recorder,
    process_state,
    process_tree_argv,
    python_argv,
    start_run,
    wait_for_tree,
)

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def test_pause_and_resume_reach_every_member(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(process_tree_argv(), ENV, run_id()), config, registry, recorder
            )
            pids = await wait_for_tree(recorder)
            assert set(pids.values()) <= run.members()

            await run.pause()
            observed = [run.state]
            # Returned only once the kernel shows every member stopped.
            assert {label: process_state(pid) for label, pid in pids.items()} == {
                label: "T" for label in pids
            }
            assert all(process_state(pid) == "T" for pid in run.members())

            await run.resume()
            observed.append(run.state)
            assert observed == [RunState.PAUSED, RunState.RUNNING]
            assert all(process_state(pid) not in ("T", None) for pid in pids.values())

            rung = await run.cancel("test over")
            assert rung is Rung.SIGTERM
            assert all(process_state(pid) in (None, "Z") for pid in pids.values())
    assert run.outcome == Cancelled("test over", Rung.SIGTERM, Signalled(signal.SIGTERM))
    states = [e.state for e in recorder.events if isinstance(e, StateEvent)]
    assert states == [RunState.PAUSED, RunState.RUNNING]


async def test_invalid_transitions(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(("sh", "-c", "echo up; read x; echo bye"), ENV, run_id(), stdin="pipe")
            run = await start_run(nursery, spec, config, registry, recorder)
            await recorder.wait_for_output(b"up\n")
            with pytest.raises(InvalidTransition):
                await run.resume()
            await run.pause()
            with pytest.raises(InvalidTransition):
                await run.pause()
            await run.resume()
            await run.write_stdin(b"go\n")
            await run.close_stdin()
            with pytest.raises(InvalidTransition):
                await run.write_stdin(b"late")
            with pytest.raises(InvalidTransition):
                await run.close_stdin()
            assert await run.wait() == Exited(0)
            for control in (run.pause, run.resume):
                with pytest.raises(InvalidTransition):
                    await control()
            with pytest.raises(InvalidTransition):
                await run.cancel("too late")
            with pytest.raises(InvalidTransition):
                run.send_signal("TERM")
    assert recorder.output() == b"up\nbye\n"


async def test_stdin_not_a_pipe(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(("sh", "-c", "cat; echo eof"), ENV, run_id())
            recorder = Recorder()
            run = await start_run(nursery, spec, config, registry, recorder)
            assert not run.stdin_open
            with pytest.raises(InvalidTransition):
                await run.write_stdin(b"x")
    assert recorder.output() == b"eof\n"  # stdin was /dev/null


async def test_send_signal_reaches_outsiders(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(process_tree_argv(), ENV, run_id()), config, registry, recorder
            )
            pids = await wait_for_tree(recorder)
            with pytest.raises(ValueError, match="unknown signal"):
                run.send_signal("NOPE")
            run.send_signal("KILL")
            assert await run.wait() == Signalled(signal.SIGKILL)
            # An escapee still exiting when the runner looked (its environ, hence its marker,
            # already gone) becomes our zombie a moment later; the daemon's SIGCHLD reaper
            # (run_reaper) collects it, and this loop stands in for that reaper.
            for _ in range(500):
                if all(process_state(pid) is None for pid in pids.values()):
                    break
                reap_orphans(registry)
                await trio.sleep(0.01)
    assert all(process_state(pid) is None for pid in pids.values())


async def test_back_to_back_controls_apply_in_order(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(process_tree_argv(), ENV, run_id()), config, registry, recorder
            )
            await wait_for_tree(recorder)
            async with trio.open_nursery() as controls:
                controls.start_soon(run.pause)
                await trio.testing.wait_all_tasks_blocked()
                controls.start_soon(run.resume)
            assert run.state is RunState.RUNNING
            await run.cancel("done")
    states = [e.state for e in recorder.events if isinstance(e, StateEvent)]
    assert states == [RunState.PAUSED, RunState.RUNNING]


def test_refusals_name_the_state_in_plain_words() -> None:
    # What a client reads in the -32005 message: "an ending run", not "a ending run".
    with pytest.raises(InvalidTransition, match=r"^cannot pause an ending run$"):
        next_state(RunState.ENDING, Action.PAUSE)
    with pytest.raises(InvalidTransition, match=r"^cannot resume a completed run$"):
        next_state(RunState.COMPLETED, Action.RESUME)


async def test_a_resume_that_cannot_be_confirmed_leaves_the_run_paused(
    registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    # Observed over the wire: -32007 for the RESUME, `status` said paused, and the root ran.
    config = SupervisionConfig(term_grace=1.0, kill_wait=2.0, control_timeout=0.5)
    code = (
        "import os, signal, sys, time\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    while True:\n"  # stops itself whenever it is continued
        "        os.kill(os.getpid(), signal.SIGSTOP)\n"
        "print(child, flush=True)\n"
        "time.sleep(1000)\n"
    )
    recorder = Recorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = await start_run(
                nursery, SpawnSpec(python_argv(code), ENV, run_id()), config, registry, recorder
            )
            await recorder.wait_for_output(b"\n")
            stopper = int(recorder.output())
            unconfirmed: ControlTimeout | None = None
            for _ in range(50):  # a resume seeing the stopper between its stops succeeds
                await run.pause()
                try:
                    await run.resume()
                except ControlTimeout as exc:
                    unconfirmed = exc
                    break
            assert unconfirmed is not None
            assert unconfirmed.not_stopped == [stopper]
            assert run.state is RunState.PAUSED
            assert process_state(run.pid) == "T"  # stopped again, as the state says
            rung = await run.cancel("test over")
            assert rung is Rung.SIGTERM
            assert process_state(stopper) in (None, "Z")


class _GatedRecorder(Recorder):
    """A sink that takes nothing until opened: a client that has stopped reading."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = trio.Event()

    async def deliver(self, event: SequencedEvent) -> None:
        await self.opened.wait()
        await super().deliver(event)


async def test_output_written_before_a_pause_precedes_its_event(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str], tmp_path: Path
) -> None:
    """Output still in the pipe when every process is seen stopped was written before the
    pause: it is delivered before `paused`, however far behind the sink is."""
    flags = [tmp_path / "one", tmp_path / "two"]
    wait = "while [ ! -e {} ]; do sleep 0.01; done"
    steps = ("printf AAAA", wait.format(flags[0]), "printf CCCC", wait.format(flags[1]))
    words = "; ".join((*steps, "printf BBBB", "exec sleep 1000"))
    recorder = _GatedRecorder()
    # No room in the channel: the reader holds CCCC, waiting for the pump (which holds AAAA).
    config = attrs.evolve(config, channel_capacity=0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(("sh", "-c", words), ENV, run_id())
            run = await start_run(nursery, spec, config, registry, recorder)
            for flag, read in zip(flags, (4, 8), strict=True):
                while run.stdout_bytes < read:  # noqa: ASYNC110 - no event for a read
                    await trio.sleep(0.01)
                flag.touch()
            while run.unread_bytes("stdout") < 4:  # noqa: ASYNC110 - only FIONREAD tells
                await trio.sleep(0.01)
            await run.pause()  # BBBB is in the pipe, the child stopped
            recorder.opened.set()
            while not any(isinstance(e, StateEvent) for e in recorder.events):
                await recorder.wait_changed()
            await run.cancel("test over")
    first_state = next(i for i, e in enumerate(recorder.events) if isinstance(e, StateEvent))
    before = recorder.events[:first_state]
    assert b"".join(e.data for e in before if isinstance(e, Output)) == b"AAAACCCCBBBB"
    states = [e.state for e in recorder.events if isinstance(e, StateEvent)]
    assert states == [RunState.PAUSED]


async def _nothing() -> None:
    """A batching sink's `idle`: the pump then coalesces, and its readers read ahead."""


async def test_output_read_but_held_before_a_pause_precedes_its_event(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str], tmp_path: Path
) -> None:
    """Output the reader holds when the pause is confirmed (read, waiting behind the held
    state changes of an earlier PAUSE and RESUME), the pipe empty: before `paused` too."""
    flag = tmp_path / "flag"
    waiting = f"while [ ! -e {flag} ]; do sleep 0.01; done"
    words = f"printf 'AAAA\\n'; {waiting}; printf 'XXXX\\n' >&2; exec sleep 1000"
    config = attrs.evolve(config, channel_capacity=0)
    recorder = _GatedRecorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[RunEvent](0)
            spec = SpawnSpec(("sh", "-c", words), ENV, run_id())
            run = await nursery.start(partial(run_process, spec, config, send, registry))
            run.pump = pump = OutputPump(receive, recorder.deliver, config, idle=_nothing)
            nursery.start_soon(pump.run)
            while run.stdout_bytes < 5:  # noqa: ASYNC110 - no event for a read
                await trio.sleep(0.01)
            await run.pause()  # held: the sink takes nothing
            await run.resume()
            flag.touch()
            while run.stderr_bytes < 5:  # noqa: ASYNC110 - read, and held behind the states
                await trio.sleep(0.01)
            assert run.unread_bytes("stderr") == run.unread_bytes("stdout") == 0
            await run.pause()
            recorder.opened.set()
            while sum(isinstance(e, StateEvent) for e in recorder.events) < 3:
                await recorder.wait_changed()
            await run.cancel("test over")
    kinds = [
        e.state if isinstance(e, StateEvent) else e.data
        for e in recorder.events
        if isinstance(e, StateEvent | Output)
    ]
    running, paused = RunState.RUNNING, RunState.PAUSED
    assert kinds == [b"AAAA\n", paused, running, b"XXXX\n", paused]
