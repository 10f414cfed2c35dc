"""W1's second floor: the same child read from its pipe by Python and relayed over loopback TCP.

What any daemon of this shape must do at least — read the pipe, write a socket, and have a
separate client process read it — with nothing else: no WebSocket, no framing, no event loop.
The relay reads `read_size` at a time and `sendall`s each read; the reader (its own process,
like the benchmark's client) receives into a 4 MiB buffer and counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time

from bench.pipe import F_SETPIPE_SZ, PIPE_SIZE, PipeResult
from bench.procfs import self_cpu_seconds

READER = """
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = memoryview(bytearray(4 * 1024 * 1024))
total = 0
while n := sock.recv_into(buf):
    total += n
print(total)
"""
BOUND = 120.0


def relay_pipe(argv: list[str], read_size: int) -> PipeResult:
    """Run `argv`, relay its stdout to a reader process over loopback TCP; time to the end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(listener.getsockname()[1])], stdout=subprocess.PIPE
    )
    sock, _ = listener.accept()
    listener.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_SIZE)
    cpu = self_cpu_seconds()
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=write_fd, stdin=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        while chunk := os.read(read_fd, read_size):
            sock.sendall(chunk)
        sock.close()
        out, _ = reader.communicate(timeout=BOUND)
    finally:
        os.close(read_fd)
        child.wait()
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    return PipeResult(time.perf_counter() - started, int(out), self_cpu_seconds() - cpu)
