"""Log lines reach stderr through a thread of their own, so that logging can neither stop nor
stall the daemon.

A log call only queues its line.  The writer thread writes what is queued, as one write when
several lines wait.  When stderr cannot take a line — its reader has gone (EPIPE), the disk
under a log file is full (ENOSPC), an I/O error, or more than `bound` lines are waiting behind a
reader that does not read — the line is dropped and counted; the first line written after a
loss is preceded by one that says how many were lost and why (``log.lines_lost``).  At exit
the thread gets a bounded time to write what is still queued (``close``).

A line logged just before the process is SIGKILLed may be lost with it: that is the price of
never waiting for stderr.

When no thread can be started (a full pids cgroup or RLIMIT_NPROC, where a run's leftovers may
still hold every task a restarted daemon could have), the daemon still starts: each log call
tries to start the writer again, and until it does writes the queued lines itself once stderr
can take them at once (``select``) — else they wait, up to `bound`, as above.
"""

from __future__ import annotations

import collections
import errno
import os
import select
import threading
from collections.abc import Callable

BOUND = 10_000  # lines waiting for a reader that does not read, before lines are dropped
CLOSE_TIMEOUT = 2.0  # seconds at exit to write what is queued


class LineWriter:
    """Lines to the file descriptor `fd`, written by a daemon thread (see the module doc).

    `lost_line(count, reason)` renders the line that reports a loss, in the log's format.
    """

    def __init__(
        self, fd: int, lost_line: Callable[[int, str], bytes], *, bound: int = BOUND
    ) -> None:
        self._fd = fd
        self.lost_line = lost_line
        self._bound = bound
        self._lines: collections.deque[bytes] = collections.deque()
        self._ready = threading.Condition()
        self._closing = False
        self._unreported = 0  # lost since the last loss was reported
        self._reason = ""
        self._torn = False  # a failed write left part of a line: the next write ends it first
        self.lost = 0  # every line lost so far
        self._thread: threading.Thread | None = None
        self._start()

    def _start(self) -> bool:
        """Start the writer thread unless it runs; whether it runs."""
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="ccx-log-writer", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no thread can be started now (module doc)
                return False
            self._thread = thread
        return True

    def put(self, line: bytes) -> None:
        """Queue one line (without its newline); never blocks, never raises."""
        with self._ready:
            if len(self._lines) >= self._bound:
                self._lose(1, "more log lines waiting than the bound: stderr is not being read")
                return
            self._lines.append(line)
            self._ready.notify()
            if self._thread is None and not self._start():
                self._write_ready()

    def _write_ready(self) -> None:
        """Without a writer thread: write what is queued if stderr takes it at once (under
        the lock)."""
        try:
            writable = bool(select.select([], [self._fd], [], 0)[1])
        except (OSError, ValueError):
            writable = True  # let the write say what is wrong
        if writable and self._lines:
            lines, reported = self._take()
            self._wrote(lines, reported, self._write(b"\n".join(lines) + b"\n", torn=self._torn))

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is queued (waiting at most `timeout`), then stop the thread."""
        with self._ready:
            self._closing = True
            self._ready.notify()
            if self._thread is None:
                self._write_ready()
                return
        self._thread.join(timeout)

    def _lose(self, count: int, reason: str) -> None:
        self.lost += count
        self._unreported += count
        self._reason = reason

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._lines and not self._closing:
                    self._ready.wait()
                if not self._lines:
                    return
                lines, reported = self._take()
            failure = self._write(b"\n".join(lines) + b"\n", torn=self._torn)
            with self._ready:
                self._wrote(lines, reported, failure)

    def _take(self) -> tuple[list[bytes], int]:
        """The queued lines to write (under the lock), a loss report first if one is due;
        with the count that report gives."""
        lines = list(self._lines)
        self._lines.clear()
        reported = self._unreported
        if reported:
            lines.insert(0, self.lost_line(reported, self._reason))
            self._unreported = 0
        return lines, reported

    def _wrote(self, lines: list[bytes], reported: int, failure: str | None) -> None:
        """Count what a write of `lines` lost (under the lock)."""
        if failure is not None:
            self._lose(len(lines) - (1 if reported else 0), failure)
            self._unreported += reported  # the report did not get out: made again

    def _write(self, data: bytes, *, torn: bool) -> str | None:
        """Write all of `data` (after a newline if the last write tore a line); what went
        wrong if it could not be (part may have gone: then this write tore a line)."""
        view = memoryview(b"\n" + data if torn else data)
        started = False
        while view:
            try:
                written = os.write(self._fd, view)
            except InterruptedError:
                continue
            except BlockingIOError:  # someone made the shared descriptor non-blocking
                select.select([], [self._fd], [])
                continue
            except OSError as exc:
                self._torn = torn or started
                return os.strerror(exc.errno or errno.EIO)
            started = started or written > 0
            view = view[written:]
        self._torn = False
        return None
