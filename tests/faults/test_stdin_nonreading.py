"""stdin to children that do not read: bounded, never in the way of controls, never corrupt.

Observed on main (through the daemon): ``stdin: "pipe"`` to a child that never reads, 2 MiB
written: CANCEL and ``signal`` on that run were never answered.  These are the supervision
side's guarantees: a write is refused at once beyond the per-run bound, controls are answered
while a write waits on a full pipe, cancel() fails pending writes at once, and a caller that
is cancelled leaves the child's stdin whole.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import StdinClosed, StdinFull
from cc_executor.supervision.events import RunState
from cc_executor.supervision.outcome import Cancelled, Exited
from cc_executor.supervision.reaper import enable_subreaper
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import Recorder, python_argv, start_run

ENV = {"PATH": "/usr/bin:/bin"}
MIB = 1024 * 1024
CONFIG = SupervisionConfig(term_grace=1.0, kill_wait=2.0, stdin_max_pending=3 * MIB)
NEVER_READS = python_argv("print('ready', flush=True)\nimport time\ntime.sleep(120)")
# Reads nothing until SIGUSR1, then all of stdin, and reports what it got.
READS_WHEN_TOLD = python_argv(
    "import hashlib, signal, sys\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"  # no race with the signal
    "print('ready', flush=True)\n"
    "signal.sigwait({signal.SIGUSR1})\n"
    "data = sys.stdin.buffer.read()\n"
    "print(len(data), hashlib.sha256(data).hexdigest(), flush=True)\n"
)


@pytest.fixture(autouse=True)
def subreaper() -> object:
    assert enable_subreaper()
    yield
    enable_subreaper(False)


async def test_controls_are_answered_while_a_write_waits_and_cancel_fails_it() -> None:
    registry = RunRegistry()
    recorder = Recorder()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(argv=NEVER_READS, env=ENV, run_id="stdin-1", stdin="pipe")
            run = await start_run(nursery, spec, CONFIG, registry, recorder)
            await recorder.wait_for_output(b"ready\n")
            failures: list[BaseException] = []

            async def write(size: int) -> None:
                try:
                    await run.write_stdin(b"x" * size)
                except StdinClosed as exc:
                    failures.append(exc)

            nursery.start_soon(write, 2 * MIB)  # more than the pipe holds: it waits
            await trio.testing.wait_all_tasks_blocked()
            assert run.stdin_pending == 2 * MIB
            with pytest.raises(StdinFull):  # over the bound: refused at once, nothing queued
                await run.write_stdin(b"y" * (2 * MIB))
            assert run.stdin_pending == 2 * MIB
            await run.pause()  # controls do not wait for stdin
            assert run.state is RunState.PAUSED
            await run.resume()
            run.send_signal(signal.SIGCONT)
            rung = await run.cancel("stop")
            assert rung is not None
            await trio.testing.wait_all_tasks_blocked()
            assert len(failures) == 1  # the pending write failed with a clear error
            assert "cancelled" in str(failures[0])
            with pytest.raises(StdinClosed):
                await run.write_stdin(b"late")
    assert isinstance(run.outcome, Cancelled)
    assert run.stdin_pending == 0


async def test_a_cancelled_caller_leaves_stdin_whole() -> None:
    registry = RunRegistry()
    recorder = Recorder()
    first = b"a" * (2 * MIB)  # in flight when its caller goes: finished whole
    withdrawn = b"w" * 1000  # queued behind it when its caller goes: never written
    last = b"z" * 10
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(argv=READS_WHEN_TOLD, env=ENV, run_id="stdin-2", stdin="pipe")
            run = await start_run(nursery, spec, CONFIG, registry, recorder)
            await recorder.wait_for_output(b"ready\n")
            first_caller, second_caller = trio.CancelScope(), trio.CancelScope()
            nursery.start_soon(_write_in, first_caller, run.write_stdin, first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(_write_in, second_caller, run.write_stdin, withdrawn)
            await trio.testing.wait_all_tasks_blocked()
            assert run.stdin_pending == len(first) + len(withdrawn)
            first_caller.cancel()
            second_caller.cancel()
            await trio.testing.wait_all_tasks_blocked()
            run.send_signal(signal.SIGUSR1)  # now it reads
            await run.write_stdin(last)
            await run.close_stdin()
            assert await run.wait() == Exited(0)
    size, digest = recorder.output().split(b"\n")[1].split()
    assert int(size) == len(first) + len(last)
    assert digest.decode() == hashlib.sha256(first + last).hexdigest()


async def _write_in(
    scope: trio.CancelScope, write: Callable[[bytes], Awaitable[None]], data: bytes
) -> None:
    with scope:
        await write(data)
