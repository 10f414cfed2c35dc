"""Idle timeouts measure the child, not the daemon: output waiting in the pipe is not idleness.

Observed on main: a run with ``idle_timeout`` was ended as idle after the daemon itself had
been stopped, although its output sat unread in the pipe.  Here the event loop that stands for
the daemon is blocked (a synchronous sleep, as a SIGSTOP or a long stall would) for several
idle timeouts while the child keeps writing.
"""

from __future__ import annotations

import time

import pytest
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import RunState
from cc_executor.supervision.outcome import Cancelled, TimedOut
from cc_executor.supervision.reaper import enable_subreaper
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import Recorder, python_argv, start_run

ENV = {"PATH": "/usr/bin:/bin"}
CONFIG = SupervisionConfig(term_grace=1.0, kill_wait=2.0)
IDLE = 0.3
TICKER = python_argv(
    "import sys, time\nn = 0\nwhile True:\n"
    "    n += 1\n    sys.stdout.write(f'tick {n}\\n')\n    sys.stdout.flush()\n"
    "    time.sleep(0.02)\n"
)
SILENT = python_argv("print('ready', flush=True)\nimport time\ntime.sleep(120)")


@pytest.fixture(autouse=True)
def subreaper() -> object:
    assert enable_subreaper()
    yield
    enable_subreaper(False)


async def test_a_stalled_daemon_does_not_make_a_writing_child_idle() -> None:
    registry = RunRegistry()
    recorder = Recorder()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(argv=TICKER, env=ENV, run_id="idle-1")
            run = await start_run(nursery, spec, CONFIG, registry, recorder, idle_timeout=IDLE)
            await recorder.wait_for_output(b"tick 1\n")
            time.sleep(IDLE * 5)  # noqa: ASYNC251 - the daemon's loop stalls; the child writes on
            seen = recorder.output().count(b"\n")
            await recorder.wait_for_output(b"tick %d\n" % (seen + 20))
            assert run.state is RunState.RUNNING
            await run.cancel("enough")
    assert isinstance(run.outcome, Cancelled)


async def test_a_silent_child_is_still_idle() -> None:
    registry = RunRegistry()
    recorder = Recorder()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(argv=SILENT, env=ENV, run_id="idle-2")
            run = await start_run(nursery, spec, CONFIG, registry, recorder, idle_timeout=IDLE)
            await recorder.wait_for_output(b"ready\n")
            time.sleep(IDLE * 3)  # noqa: ASYNC251 - a stall with nothing in the pipe
    assert isinstance(run.outcome, TimedOut)
    assert run.outcome.kind == "idle"
