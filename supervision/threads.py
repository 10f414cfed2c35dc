"""Blocking calls handed to a worker thread, made inline when no thread can be started.

Journal writes, fsyncs, compaction and recovery run in trio's worker threads so the event loop
goes on meanwhile.  A thread is a task of the machine: under a full pids cgroup or RLIMIT_NPROC
(a run's fork bomb fills either; they count the daemon's threads with its children) and under
memory pressure, starting one fails with ``RuntimeError: can't start new thread`` — while the
threads trio keeps idle have gone after ten seconds.  That is bad luck, not a bug: the call is
made in the event loop instead (what a small journal write always does), slower for the loop
but with the same result, and said once in the log (``threads.unavailable``, a warning) until
a thread starts again (``threads.available``).

`in_thread` tells a thread that could not start from a ``RuntimeError`` of the call itself by
catching what the call raises inside the thread; `start_in_thread` is the same for
``trio.lowlevel.start_thread_soon`` (its `deliver` is then called at once, in the caller).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import outcome
import structlog
import trio

log = structlog.get_logger()

T = TypeVar("T")

_unavailable = False  # whether the last attempt to start a thread failed (logged once)


def _failed(exc: RuntimeError) -> None:
    global _unavailable
    if not _unavailable:
        _unavailable = True
        log.warning("threads.unavailable", error=repr(exc), action="calls made in the event loop")


def _started() -> None:
    global _unavailable
    if _unavailable:
        _unavailable = False
        log.info("threads.available")


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in a worker thread (as ``trio.to_thread.run_sync``), or in the event loop
    when no thread can be started; what `fn` returns or raises either way."""
    try:
        result: outcome.Outcome[T] = await trio.to_thread.run_sync(outcome.capture, fn, *args)
    except RuntimeError as exc:  # the thread did not start: `fn` raised inside it is captured
        _failed(exc)
        return fn(*args)
    _started()
    return result.unwrap()


def start_in_thread(fn: Callable[[], T], deliver: Callable[[outcome.Outcome[T]], object]) -> None:
    """``trio.lowlevel.start_thread_soon(fn, deliver)``; when no thread can be started, `fn`
    runs now and `deliver` is called with its outcome before this returns."""
    try:
        trio.lowlevel.start_thread_soon(fn, deliver)
    except RuntimeError as exc:
        _failed(exc)
        deliver(outcome.capture(fn))
    else:
        _started()
