"""The log writer thread on a real pipe: lines beyond the bound behind a reader that does not
read are dropped and counted, and the first write after says how many, before what follows."""

from __future__ import annotations

import os
import time

from cc_executor.executor.logwriter import LineWriter

BOUND_S = 30.0


def lost_line(count: int, reason: str) -> bytes:
    return f"LOST {count} ({reason})".encode()


def test_lines_beyond_the_bound_are_counted_then_reported_in_order() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    while True:  # a reader that does not read: the pipe is full before the first line
        try:
            os.write(write_end, b"." * 65536)
        except BlockingIOError:
            break
    os.set_blocking(write_end, True)
    writer = LineWriter(write_end, lost_line, bound=5)
    try:
        for i in range(20):
            writer.put(b"line %d" % i)  # never blocks, though nothing can be written
        assert writer.lost >= 20 - 5 - 1  # the thread holds at most one batch of its own
        os.set_blocking(read_end, False)
        out = b""
        deadline = time.monotonic() + BOUND_S
        sent = False
        while not out.endswith(b"after\n"):
            assert time.monotonic() < deadline, out[-500:]
            if not sent and b"LOST" in out and out.endswith(b"\n"):
                writer.put(b"after")  # once the queue has drained: a line that follows
                sent = True
            try:
                out += os.read(read_end, 1 << 20)
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        writer.close()
        os.close(read_end)
        os.close(write_end)
    lines = out.lstrip(b".").splitlines()
    kept = [line for line in lines if line.startswith(b"line ")]
    reports = [line for line in lines if line.startswith(b"LOST ")]
    assert reports == [b"LOST %d (more log lines waiting than the bound: stderr is not being read)"
                       % writer.lost]  # fmt: skip
    assert len(kept) + writer.lost == 20
    assert kept == sorted(kept, key=lambda line: int(line.split()[1]))  # in order
    assert lines.index(reports[0]) < lines.index(b"after")
