"""PAUSE holds for a shell caught mid-vfork: its child stopped before exec, it waits in D."""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import RunState
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import Recorder, start_run

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def test_pause_and_resume_a_shell_that_forks_constantly(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    # dash vforks every `sleep`; over this many pauses some land between vfork and exec
    # (measured on this machine: about one pause in twenty).
    spec = SpawnSpec(("sh", "-c", "while :; do sleep 0.001; done"), ENV, run_id())
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            run = await start_run(nursery, spec, config, registry, Recorder())
            states = []
            for _ in range(150):
                await run.pause()
                states.append(run.state)
                await run.resume()
                states.append(run.state)
            assert states == [RunState.PAUSED, RunState.RUNNING] * 150
            await run.cancel("done")
