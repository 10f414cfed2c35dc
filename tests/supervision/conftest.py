"""Fixtures for supervision tests: fast config, a registry, and the no-leftovers check."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from cc_executor.supervision import procfs
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.reaper import enable_subreaper
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.testing import marked_processes, zombie_children

# Unique to this pytest process: the no-leftovers check kills what carries the prefix anywhere
# on the machine, and other test suites run beside this one (a shared prefix made each suite
# SIGKILL the other's runs).  It must not start with another suite's prefix either.
RUN_PREFIX = f"sv{os.getpid()}x-"


@pytest.fixture
def config() -> SupervisionConfig:
    # Short grace periods keep ladder tests quick; they are bounds, never asserted durations.
    return SupervisionConfig(term_grace=1.0, kill_wait=2.0, drain_timeout=1.0)


@pytest.fixture
def registry() -> RunRegistry:
    return RunRegistry()


@pytest.fixture
def run_id() -> Callable[[], str]:
    """Fresh run ids, all recognisable by the leftovers check."""
    return lambda: f"{RUN_PREFIX}{uuid.uuid4().hex[:12]}"


def _ticks_now() -> int:
    """Clock ticks since boot, the unit of a process's start time in /proc."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def _started_since(pid: int, ticks: int) -> bool:
    stat = procfs.read_stat(pid)
    return stat is not None and stat.start_ticks >= ticks


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Run each test as child subreaper; afterwards no run process may live, no zombie of a
    process the test started stay.  (A child of another directory's test that happens to
    exit during this one — a daemon a fault test left to end — is collected, not blamed.)"""
    assert enable_subreaper()
    since = _ticks_now()
    try:
        yield
    finally:
        survivors = marked_processes(RUN_PREFIX)
        for pid in survivors:  # ours (they carry our marker): clean up for the next test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        zombies = {pid for pid in zombie_children() if _started_since(pid, since)}
        for pid in zombie_children():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        enable_subreaper(False)
    assert not survivors, f"processes of a run survived: {sorted(survivors)}"
    assert not zombies, f"zombie children left: {sorted(zombies)}"
