"""Faults on the daemon's own stderr, produced for real: its log reader gone (EPIPE), a log
file on a full disk (a small tmpfs), a reader that never reads (a full pipe).  In each the
daemon goes on serving runs; what could not be logged is counted and then said."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import trio
from ccx_testing import stop_process, unused_port
from faults_journal_testing import fill, small_tmpfs
from faults_net_testing import http_get

from cc_executor.executor.client import open_connection

TIMEOUT = 60
RUNS = 3


@contextlib.asynccontextmanager
async def daemon_logging_to(
    stderr: int | None, tmp_path: Path
) -> AsyncIterator[tuple[trio.Process, int]]:
    """`ccx serve` with its stderr on the descriptor `stderr` (closed here once the daemon has
    it; None: the daemon starts with descriptor 2 closed); yields it once it answers."""
    port = unused_port()
    argv = [
        *(sys.executable, "-m", "cc_executor.executor", "serve", "--port", str(port)),
        *("--shutdown-grace", "0", "--state-dir", str(tmp_path / "state")),
    ]
    if stderr is None:
        argv = ["sh", "-c", 'exec "$@" 2>&-', "sh", *argv]
    try:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "CCX_LOG_FORMAT": "json"},
        )
    finally:
        if stderr is not None:
            os.close(stderr)
    try:
        with trio.fail_after(30):
            while True:
                with contextlib.suppress(OSError):
                    if (await http_get(port, "/healthz")).startswith(b"HTTP/1.1 200"):
                        break
                assert process.poll() is None, "the daemon exited at start"
                await trio.sleep(0.05)
        yield process, port
    finally:
        await stop_process(process)


async def serve_runs(port: int, count: int = RUNS) -> None:
    """`count` runs, one after the other, each ending as it should."""
    async with open_connection(f"ws://127.0.0.1:{port}/") as conn:
        for i in range(count):
            run = await conn.execute(["echo", f"run {i}"])
            done = await run.wait()
            assert (done.outcome, done.completion.exit_code) == ("exited", 0)


async def lines_lost(port: int) -> int:
    page = (await http_get(port, "/metrics")).decode()
    (line,) = [x for x in page.splitlines() if x.startswith("ccx_log_lines_lost_total ")]
    return int(line.split()[1])


async def test_a_log_reader_that_goes_away_does_not_end_the_daemon(tmp_path: Path) -> None:
    """Every write to stderr fails with EPIPE once its reader has closed: the daemon serves on,
    counts the lines, and ends cleanly on SIGTERM."""
    read_end, write_end = os.pipe()
    with trio.fail_after(TIMEOUT):
        async with daemon_logging_to(write_end, tmp_path) as (process, port):
            os.close(read_end)
            await serve_runs(port)
            assert await lines_lost(port) > 0
            assert process.poll() is None
            process.terminate()
            await process.wait()
        assert process.returncode == 0


async def test_a_daemon_started_with_stderr_closed_serves(tmp_path: Path) -> None:
    """`ccx serve 2>&-`: no descriptor 2 at all.  The daemon puts /dev/null there (so no socket
    it opens can take the number and get log lines written into it) and serves."""
    with trio.fail_after(TIMEOUT):
        async with daemon_logging_to(None, tmp_path) as (process, port):
            await serve_runs(port)
            assert os.readlink(f"/proc/{process.pid}/fd/2") == os.devnull
            process.terminate()
            await process.wait()
        assert process.returncode == 0


async def test_a_log_file_on_a_full_disk_loses_lines_and_says_so(tmp_path: Path) -> None:
    """Lines that do not fit are dropped (the daemon serves on); once there is room again the
    next line says how many were lost and why, on a line of its own."""
    with small_tmpfs(tmp_path / "logs", size="256k") as disk:
        log = disk / "daemon.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with trio.fail_after(TIMEOUT):
            async with daemon_logging_to(fd, tmp_path) as (process, port):
                filler = fill(disk)
                await serve_runs(port, count=20)
                assert await lines_lost(port) > 0
                filler.unlink()
                await serve_runs(port, count=1)
                for _ in range(600):  # the writer thread writes it soon after
                    if b"log.lines_lost" in log.read_bytes():
                        break
                    await trio.sleep(0.05)
                assert process.poll() is None
        text = log.read_bytes()
    reports = [
        orjson.loads(line) for line in text.splitlines() if line.startswith(b'{"event":"log.lines')
    ]
    assert reports, text[-2000:]
    assert reports[0]["reason"] == os.strerror(28)  # ENOSPC
    assert reports[0]["lines"] > 0


async def test_a_log_reader_that_never_reads_does_not_stall_the_daemon(tmp_path: Path) -> None:
    """With nobody reading its stderr pipe, the daemon's log lines fill the pipe; runs are
    served all the same, and the lines come out once the pipe is read."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        with trio.fail_after(TIMEOUT):
            async with daemon_logging_to(write_end, tmp_path) as (process, port):
                # Well past the pipe's 64 KiB of log lines (a few hundred bytes per line, a
                # few lines per run and per connection).
                for _ in range(10):
                    await serve_runs(port, count=30)
                assert process.poll() is None
                process.terminate()
                drained = b""
                while process.poll() is None or b"daemon.stopped" not in drained:
                    try:
                        drained += os.read(read_end, 1 << 20)
                    except BlockingIOError:
                        await trio.sleep(0.01)
                await process.wait()
        assert process.returncode == 0
        assert drained.count(b'"event":"run.end"') == 300
    finally:
        os.close(read_end)
