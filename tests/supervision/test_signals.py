"""Signals forwarded to a trio run on another thread (supervision/signals.py).

Plain (not trio) tests: the handlers must be installed from the main thread, and the run they
reach is on a thread of its own, as in ``ccx serve``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import pytest
import trio

from cc_executor.supervision.signals import ForwardedSignals

BOUND = 10.0


def in_a_thread(main: Callable[[], object]) -> None:
    """Run `main` (a trio.run call) on a thread of its own; re-raise what it raised."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            main()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(BOUND * 2)
    assert not thread.is_alive()
    if failure:
        raise failure[0]


def test_signals_reach_the_receivers_open_for_them_each_once_however_often_they_came() -> None:
    forwarded = ForwardedSignals((signal.SIGUSR1, signal.SIGUSR2))
    got: dict[str, list[int]] = {"usr1": [], "both": []}

    async def main() -> None:
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                await nursery.start(forwarded.dispatch)
                with (
                    forwarded.open_receiver(signal.SIGUSR1) as usr1,
                    forwarded.open_receiver(signal.SIGUSR1, signal.SIGUSR2) as both,
                ):
                    # To this thread: delivered (and its number written) before pthread_kill
                    # returns, so both arrive before either is read, and are seen once.
                    here = threading.get_ident()
                    signal.pthread_kill(here, signal.SIGUSR1)
                    signal.pthread_kill(here, signal.SIGUSR1)
                    got["usr1"].append(await usr1.__anext__())
                    os.kill(os.getpid(), signal.SIGUSR2)  # to the process: any thread
                    got["both"].append(await both.__anext__())
                    got["both"].append(await both.__anext__())
                    with trio.move_on_after(0.05):  # nothing else came (bounded, not timed)
                        got["usr1"].append(await usr1.__anext__())
                nursery.cancel_scope.cancel()

    try:
        in_a_thread(lambda: trio.run(main))
    finally:
        forwarded.close()
    assert got["usr1"] == [signal.SIGUSR1]
    assert got["both"] == [signal.SIGUSR1, signal.SIGUSR2]


def test_a_signal_that_comes_before_the_run_reads_it_is_held_not_lost() -> None:
    forwarded = ForwardedSignals((signal.SIGUSR1,))
    os.kill(os.getpid(), signal.SIGUSR1)  # no run yet: the wakeup socket holds its number
    got: list[int] = []

    async def main() -> None:
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                with forwarded.open_receiver(signal.SIGUSR1) as usr1:
                    await nursery.start(forwarded.dispatch)
                    got.append(await usr1.__anext__())
                nursery.cancel_scope.cancel()

    try:
        in_a_thread(lambda: trio.run(main))
    finally:
        forwarded.close()
    assert got == [signal.SIGUSR1]


def test_close_puts_back_the_handlers_and_the_wakeup_descriptor() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    forwarded = ForwardedSignals((signal.SIGUSR1,))
    assert signal.getsignal(signal.SIGUSR1) is not before
    forwarded.close()
    assert signal.getsignal(signal.SIGUSR1) is before
    assert signal.set_wakeup_fd(-1) == -1  # none was set before, and none is left


def test_a_receiver_for_a_signal_not_forwarded_is_refused() -> None:
    forwarded = ForwardedSignals((signal.SIGUSR1,))
    try:
        with (
            pytest.raises(ValueError, match="not forwarded"),
            forwarded.open_receiver(signal.SIGUSR2),
        ):
            pass
    finally:
        forwarded.close()


def test_only_the_main_thread_can_forward_signals() -> None:
    refused: list[BaseException] = []

    def make() -> None:
        try:
            ForwardedSignals((signal.SIGUSR1,)).close()
        except ValueError as exc:
            refused.append(exc)

    in_a_thread(make)
    assert refused
    assert signal.set_wakeup_fd(-1) == -1
