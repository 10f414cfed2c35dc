"""Helpers for tests of code that runs processes through supervision (like trio.testing)."""

from __future__ import annotations

import os
import sys
from functools import partial

import attrs
import trio

from cc_executor.supervision import procfs
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Output,
    RunEvent,
    SequencedEvent,
    Stream,
)
from cc_executor.supervision.marker import RUN_ID_VAR
from cc_executor.supervision.outcome import Outcome
from cc_executor.supervision.pump import OutputPump
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.run import Run
from cc_executor.supervision.runner import run_process
from cc_executor.supervision.spawn import SpawnSpec


def python_argv(code: str) -> tuple[str, ...]:
    """argv running a Python snippet with this interpreter, unbuffered."""
    return (sys.executable, "-u", "-c", code)


_TREE_CODE = """
import os, signal, sys, time

def say(label):
    # One write(2) per line: lines from different processes never interleave.
    os.write(1, f"{label} {os.getpid()}\\n".encode())

def forever():
    while True:
        time.sleep(1000)

def fork(body):
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid

def grandchild():
    if "ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    say("grandchild")
    forever()

def child():
    fork(grandchild)
    say("child")
    forever()

def setsid_grandchild():
    os.setsid()
    say("setsid")
    forever()

def setsid_parent():
    fork(setsid_grandchild)
    forever()

def escaped():
    os.setsid()
    say("escaped")
    forever()

def double_fork():
    fork(escaped)  # and exit: the escaped process is orphaned

fork(child)
fork(setsid_parent)
os.waitpid(fork(double_fork), 0)
say("root")
forever()
"""

TREE_LABELS = (b"root", b"child", b"grandchild", b"setsid", b"escaped")


def process_tree_argv(*, grandchild_ignores_term: bool = False) -> tuple[str, ...]:
    """A tree that tries every escape: a child with a grandchild in the group, a grandchild in
    its own session under a live parent, and a double-forked setsid process whose parent is
    gone.  Each prints "<label> <pid>" (labels: TREE_LABELS) once it is in place."""
    return python_argv(_TREE_CODE) + (("ignore-term",) if grandchild_ignores_term else ())


async def wait_for_tree(recorder: Recorder) -> dict[str, int]:
    """Wait until every process of process_tree_argv() reported; return label -> pid."""
    while True:
        pids: dict[str, int] = {}
        for line in recorder.output().split(b"\n")[:-1]:
            label, pid = line.split()
            pids[label.decode()] = int(pid)
        if len(pids) == len(TREE_LABELS):
            return pids
        await recorder.wait_changed()


@attrs.define
class Recorder:
    """A pump sink that keeps every event; `delay` makes it a slow client."""

    delay: float = 0.0
    events: list[SequencedEvent] = attrs.Factory(list)
    _changed: trio.Event = attrs.Factory(trio.Event)

    async def deliver(self, event: SequencedEvent) -> None:
        if self.delay:
            await trio.sleep(self.delay)
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    def output(self, stream: Stream = "stdout") -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, Output) and e.stream == stream)

    @property
    def completed(self) -> Completed | None:
        last = self.events[-1] if self.events else None
        return last.completed if isinstance(last, CompletedEvent) else None

    async def wait_changed(self) -> None:
        """Wait for the next delivered event."""
        await self._changed.wait()

    async def wait_for_output(self, needle: bytes, stream: Stream = "stdout") -> None:
        """Wait until `needle` has been delivered on `stream` (bound it with fail_after)."""
        while needle not in self.output(stream):
            await self._changed.wait()


async def start_run(
    nursery: trio.Nursery,
    spec: SpawnSpec,
    config: SupervisionConfig,
    registry: RunRegistry,
    recorder: Recorder,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (see run_process)
    idle_timeout: float | None = None,
) -> Run:
    """Start a runner and its pump (delivering to `recorder`) in `nursery`."""
    send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
    run: Run = await nursery.start(
        partial(
            run_process,
            spec,
            config,
            send,
            registry,
            timeout=timeout,
            idle_timeout=idle_timeout,
        )
    )
    run.pump = pump = OutputPump(receive, recorder.deliver, config)
    nursery.start_soon(pump.run)
    return run


async def run_to_completion(
    spec: SpawnSpec,
    config: SupervisionConfig,
    registry: RunRegistry,
    recorder: Recorder,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (see run_process)
    idle_timeout: float | None = None,
) -> Outcome:
    """Run `spec` through runner and pump; return the outcome once everything is delivered."""
    async with trio.open_nursery() as nursery:
        run = await start_run(
            nursery, spec, config, registry, recorder, timeout=timeout, idle_timeout=idle_timeout
        )
    assert run.outcome is not None
    return run.outcome


def marked_processes(prefix: str) -> set[int]:
    """Live processes anywhere whose CCX_RUN_ID starts with `prefix`."""
    needle = f"\0{RUN_ID_VAR}={prefix}".encode()
    found = set()
    for pid in procfs.all_pids():
        stat = procfs.read_stat(pid)
        if stat is None or stat.is_zombie or pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = b"\0" + f.read()
        except OSError:
            continue
        if needle in environ:
            found.add(pid)
    return found


def zombie_children() -> set[int]:
    """Zombie children of this process."""
    return {
        pid
        for pid in procfs.children(os.getpid())
        if (stat := procfs.read_stat(pid)) is not None and stat.is_zombie
    }


def process_state(pid: int) -> str | None:
    """The one-letter state of a process from /proc (None if it is gone)."""
    stat = procfs.read_stat(pid)
    return None if stat is None else stat.state
