"""The raw pipe: the same child read straight from a pipe, with no daemon in between.

Two readers: 1 MiB reads with nothing done to the data ("raw pipe", the reference every ratio
uses), and Python reading 64 KiB chunks (what any Python daemon starts from).  The pipe gets
the same 1 MiB capacity the daemon asks for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time

import attrs

from bench.procfs import self_cpu_seconds

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1024 * 1024


@attrs.frozen
class PipeResult:
    seconds: float
    bytes: int
    reader_cpu: float


def read_pipe(argv: list[str], read_size: int) -> PipeResult:
    """Run `argv` with stdout on a pipe and read it to EOF in `read_size` reads."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # the pipe keeps its default size
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_SIZE)
    cpu = self_cpu_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=write_fd, stdin=subprocess.DEVNULL)
    os.close(write_fd)
    total = 0
    try:
        while chunk := os.read(read_fd, read_size):
            total += len(chunk)
    finally:
        os.close(read_fd)
        process.wait()
    return PipeResult(time.perf_counter() - started, total, self_cpu_seconds() - cpu)
