"""W8 client side: how long after the child wrote a line the reader has it.

The child writes one line every `period` seconds, each carrying `time.monotonic_ns()` taken
just before its write() (CLOCK_MONOTONIC is one clock for every process of the machine).  The
reader notes the same clock when a read hands it the line.  Two readers, run one after the
other by the same process so that they differ in nothing else: the pipe itself (a blocking
`os.read` on the child's stdout), and a daemon client (one run, its output as binary frames or
as JSON text).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from bench.streams import read_run
from bench.wsclient import connect
from cc_executor.protocol.binary import BINARY_SUBPROTOCOL

CHILD = """
import os, sys, time
count, period = int(sys.argv[1]), float(sys.argv[2])
due = time.monotonic() + period
for i in range(count):
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    due += period
    os.write(1, b"%d %d\\n" % (time.monotonic_ns(), i))
"""


class Lines:
    """Reassembles lines from chunks and records each one's write-to-read latency."""

    def __init__(self) -> None:
        self.partial = b""
        self.latencies: list[float] = []

    def feed(self, data: bytes | memoryview | str) -> None:
        now = time.monotonic_ns()
        chunk = data.encode() if isinstance(data, str) else bytes(data)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            written = int(line.split(b" ", 1)[0])
            self.latencies.append((now - written) / 1e9)


def child_argv(count: int, period: float) -> list[str]:
    return [sys.executable, "-c", CHILD, str(count), str(period)]


def latency(mode: str, count: int, period: float, port: int = 0) -> dict[str, Any]:
    """Per-line latencies in seconds, read by `mode`: "pipe", "json" or "binary"."""
    lines = Lines()
    argv = child_argv(count, period)
    if mode == "pipe":
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert child.stdout is not None
        fd = child.stdout.fileno()
        while chunk := os.read(fd, 65536):
            lines.feed(chunk)
        child.wait()
    else:
        client = connect(port, subprotocol=BINARY_SUBPROTOCOL if mode == "binary" else None)
        if client.binary != (mode == "binary"):
            raise RuntimeError(f"asked for {mode} output, the daemon did not agree")
        read_run(client, argv, lambda stream, data: lines.feed(data), bound=count * period + 60)
        client.close()
    if len(lines.latencies) != count:
        raise RuntimeError(f"{len(lines.latencies)} lines arrived of {count}")
    return {"latencies": lines.latencies}
