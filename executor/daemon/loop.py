"""``ccx serve`` runs its event loop on a thread of its own; the first thread only waits for it.

Theory of operation: the kernel reparents an orphan to the first live thread of its subreaper
(the thread-group leader), while a child stays the child of the thread that started it.  Every
ending run lists the daemon's orphans, since one of them may be a process of the run that must
be ended (supervision/tree.py), and the reaper lists them on SIGCHLD.  With the event loop —
which starts every run's root — on the leader, that list held every live run's root as well,
and each reading of it cost O(runs) in the kernel: ~150 us a run with a thousand runs at once,
read once for every run that ends.  With the loop on a second thread, the roots are that
thread's children, and the leader's are the orphans alone.

Only the main thread may install signal handlers, and trio's own receiver works only in a run
on the main thread: the handlers are installed here before the loop starts, and the loop
receives its signals through the interpreter's wakeup descriptor
(supervision/signals.py ``ForwardedSignals``).  When no thread can be started (a full pids
cgroup: a run's leftovers that this daemon must recover and kill), the loop runs on the first
thread instead, and takes the wakeup descriptor back from the trio run that made it its own.
Once the loop thread has started (with no signal blocked, which its runs' processes inherit),
this thread blocks those signals, so that it never wakes for them.  What the run raises is
raised here.
"""

from __future__ import annotations

import signal
import threading
import warnings

import trio

from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.daemon.serve import serve_until_signalled
from cc_executor.supervision.signals import ForwardedSignals

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)


def serve_on_loop_thread(config: ServerConfig) -> None:
    """``serve_until_signalled`` with the event loop on a thread of its own (module doc).

    Call from the main thread.

    Raises:
        CannotListen: as serve_until_signalled; anything else the run raised, likewise.
    """
    forwarded = ForwardedSignals(SIGNALS)
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            # Received here even if whoever started the daemon left them blocked (a mask
            # survives exec), and so never blocked in a run's processes, which inherit this
            # thread's mask.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            trio.run(_serve, config, forwarded)
        except BaseException as exc:  # handed to the main thread, which raises it
            failure.append(exc)

    try:
        thread = threading.Thread(target=loop, name="ccx-event-loop")
        try:
            thread.start()
        except RuntimeError:  # no thread can start (a full pids cgroup): the loop runs here,
            # the roots of runs then among the leader's children (slower, as correct); trio
            # takes the wakeup descriptor as it starts (and warns), `_serve` takes it back.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "It looks like Trio's signal handling")
                loop()
        else:
            # Blocked here, after the loop thread started with none blocked (a thread inherits
            # its creator's mask, and a run's processes the mask of the thread that spawns
            # them): the kernel then delivers them to another thread, whose C-level handler
            # writes the number all the same, and this thread never wakes to take the
            # interpreter's lock from the loop for an empty Python handler (a SIGCHLD for
            # every run that ends).
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
            try:
                thread.join()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    finally:
        forwarded.close()
    if failure:
        raise failure[0]


async def _serve(config: ServerConfig, forwarded: ForwardedSignals) -> None:
    failure: Exception | None = None
    if threading.current_thread() is threading.main_thread():
        forwarded.reclaim_wakeup()
    async with trio.open_nursery() as nursery:
        await nursery.start(forwarded.dispatch)
        try:
            await serve_until_signalled(config, signals=forwarded.open_receiver)
        except Exception as exc:  # raised as itself (CannotListen), not in the nursery's group
            failure = exc
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
