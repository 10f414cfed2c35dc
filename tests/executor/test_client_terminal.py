"""ccx's status line never lands between bytes it has already promised the terminal."""

from __future__ import annotations

import os
import tty

import trio
import trio.testing

from cc_executor.executor.client.terminal import Terminal


def read_until(fd: int, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        got += os.read(fd, 65536)
    return got


async def test_no_status_line_is_drawn_while_a_write_is_in_flight() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # bytes as written: no \n -> \r\n translation
    try:
        term = Terminal(status_line=True, stdout_fd=slave, stderr_fd=slave)
        assert term.status_enabled
        line = b"x" * 200_000 + b"\n"  # far more than a pty buffers: the write blocks
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(term.write, "stdout", line)
                await trio.testing.wait_all_tasks_blocked()
                # The child's line is only partly out; a status line now would split it.
                term.draw("STATUS running")
                got = await trio.to_thread.run_sync(read_until, master, b"\n")
            term.message("END")
            got += await trio.to_thread.run_sync(read_until, master, b"END\n")
    finally:
        os.close(master)
        os.close(slave)
    assert b"STATUS" not in got
    assert got.startswith(line)
