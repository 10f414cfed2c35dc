"""W12: a state directory holding many completed durable runs.

The journals are written directly with supervision's journal API (what a durable run leaves
behind: its META, a few output records and its completion), not by running thousands of
processes. Then a daemon starts on the directory: the time from its start to the first 200
from /readyz, the time from its start to the first `list` answered (the daemon serves while it
reads the directory, and a lookup of runs waits until every journal is read: this is when it
knows them all), its idle RSS after that, and the latency of `list` (every run, one reply: from
the request to the whole reply on the client's socket; the client's parse of it is timed
apart), beside the floor of the same daemon on an empty directory.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import orjson
import trio

from bench import procfs
from bench.wsclient import connect

if TYPE_CHECKING:
    from bench.measure import Sizes

READY_BOUND = 120.0
LIST_CALLS = 5
OUTPUTS = 3  # output records per journal
SERVE = [sys.executable, "-m", "cc_executor.executor", "serve"]


def write_journals(state_dir: str, count: int) -> float:
    """`count` completed journals under `state_dir` (as the daemon keeps them); seconds taken."""
    from cc_executor.supervision import Completed, CompletedEvent, Exited, Output
    from cc_executor.supervision.journal import Journal, JournalConfig, Meta, boot_id

    directory = os.path.join(state_dir, "journals")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    config = JournalConfig(fsync="never")
    boot = boot_id()
    started = time.perf_counter()

    async def write_all() -> None:
        now = time.time() - count
        for i in range(count):
            run_id = f"bench-{i:06d}"
            meta = Meta(
                run_id=run_id,
                pid=100000 + i,
                pgid=100000 + i,
                argv=("sh", "-c", f"echo run {i}"),
                started_wall=now + i,
                boot_id=boot,
                quota_bytes=config.quota_bytes,
                quota_policy="block",
                owner="local",
            )
            journal = Journal.create(os.path.join(directory, run_id + ".journal"), meta, config)
            size = 0
            for seq in range(1, OUTPUTS + 1):
                data = b"line %d of run %d\n" % (seq, i)
                size += len(data)
                await journal.deliver(Output(seq=seq, stream="stdout", data=data))
            done = Completed(outcome=Exited(0), stdout_bytes=size, stderr_bytes=0, duration=0.01)
            await journal.deliver(CompletedEvent(seq=OUTPUTS + 1, completed=done))
            await journal.close()

    trio.run(write_all)
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def measure_daemon(state_dir: str, expected: int) -> dict[str, Any]:
    """Start a daemon on `state_dir`: seconds to ready, idle RSS, `list` latency."""
    from bench.daemon import STOP_BOUND, raise_fd_limit

    raise_fd_limit()
    port = _free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [*SERVE, "--port", str(port), "--state-dir", state_dir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not _ready(port):
            if process.poll() is not None or time.perf_counter() - started > READY_BOUND:
                raise RuntimeError("the daemon did not become ready")
            time.sleep(0.005)
        ready = time.perf_counter() - started
        client = connect(port, bound=60.0)
        request_id = client.request("list", {})
        _opcode, payload = client.read_frame()
        known = time.perf_counter() - started
        if orjson.loads(payload).get("id") != request_id:
            raise RuntimeError(f"unexpected message {payload[:200]!r}")
        time.sleep(0.5)  # settled
        idle = procfs.rss_kib(process.pid)
        latencies: list[float] = []
        parses: list[float] = []
        listed = 0
        for _ in range(LIST_CALLS):
            # Every page of `list` (a reply holds at most 768 KiB of runs, with `next`).
            listed, waited, parsed = 0, 0.0, 0.0
            params: dict[str, object] = {}
            while True:
                t = time.perf_counter()
                request_id = client.request("list", params)
                _opcode, payload = client.read_frame()  # the reply: nothing else is sent
                waited += time.perf_counter() - t
                t = time.perf_counter()
                reply = orjson.loads(payload)
                parsed += time.perf_counter() - t
                if reply.get("id") != request_id:
                    raise RuntimeError(f"unexpected message {str(reply)[:200]}")
                listed += len(reply["result"]["runs"])
                if "next" not in reply["result"]:
                    break
                params = {"after": reply["result"]["next"]}
            latencies.append(waited)
            parses.append(parsed)
        client.close()
        after = procfs.rss_kib(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {
        "ready_s": ready,
        "known_s": known,
        "idle_rss_mb": idle / 1024,
        "rss_after_list_mb": after / 1024,
        "list_ms": statistics.median(latencies) * 1000,
        "parse_ms": statistics.median(parses) * 1000,
        "listed": listed,
        "listed_ok": listed == expected,
    }


def w12_state_dir(sizes: Sizes) -> dict[str, Any]:
    n = sizes.w12_runs
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as full:
        floor = measure_daemon(empty, 0)
        generated = write_journals(full, n)
        got = measure_daemon(full, n)
    return {
        "runs": n,
        "generate_s": generated,
        **got,
        "floor_ready_s": floor["ready_s"],
        "floor_known_s": floor["known_s"],
        "floor_idle_rss_mb": floor["idle_rss_mb"],
        "floor_list_ms": floor["list_ms"],
        "floor_parse_ms": floor["parse_ms"],
    }
