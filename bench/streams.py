"""Client sides of the data-path workloads: W1 firehose, W2 integrity, W3 slow client.

Each function opens one connection, starts one run, reads it to its `process.completed` and
returns plain figures (the orchestrator measures the daemon from /proc meanwhile).
"""

from __future__ import annotations

import os
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.procfs import self_cpu_seconds
from bench.wsclient import WsClient, connect
from cc_executor.protocol.binary import BINARY_SUBPROTOCOL, HEADER_BYTES

# The fixed part of a binary output frame: kind, stream, seq, run id length (protocol/binary.py).
BINARY_HEAD = struct.Struct(">BBQB")
BINARY_STREAMS = {0x01: "stdout", 0x02: "stderr"}

READ_BOUND = 120.0  # no run of the benchmark may take longer than this
ORIGINAL_PATH = "/ws/mcp"  # the original CC-Executor's path: its framing, one line per frame


def firehose_argv(total_bytes: int, line: str) -> list[str]:
    """`yes LINE | head -c N`: N bytes of len(LINE)+1-byte lines."""
    return ["sh", "-c", f"yes {line} | head -c {total_bytes}"]


def read_run(
    client: WsClient,
    argv: list[str],
    on_output: Callable[[str, Any], None],
    bound: float = READ_BOUND,
    lines_share_seq: bool = False,
) -> dict[str, Any]:
    """Execute `argv` and feed every output chunk (type, data) to `on_output` until completion:
    `data` is a str from a text frame, a memoryview (valid until the next read) from a binary one.

    With `lines_share_seq` (the original's framing on /ws/mcp: one frame per line, the lines
    of one event carry its seq) a frame may repeat the seq before it.
    Returns timings, the completion params, the output frames and sequence-number anomalies.
    """
    started = time.perf_counter()
    deadline = started + bound
    request_id = client.request("execute", {"argv": argv})
    run_id = None
    expected_seq = 1
    seq_errors = 0
    frames = 0
    first_output = None
    read = client.read_any if client.binary else client.read_message
    while time.perf_counter() < deadline:
        message = read()
        if isinstance(message, memoryview):  # a binary output frame (protocol/binary.py)
            frames += 1
            if first_output is None:
                first_output = time.perf_counter()
            _kind, code, seq, length = BINARY_HEAD.unpack_from(message)
            if seq != expected_seq:
                seq_errors += 1
            expected_seq = seq + 1
            on_output(BINARY_STREAMS[code], message[HEADER_BYTES + length :])
            continue
        method = message.get("method")
        if method == "process.output":
            params = message["params"]
            frames += 1
            if first_output is None:
                first_output = time.perf_counter()
            seq = params["seq"]
            if seq != expected_seq and not (lines_share_seq and seq == expected_seq - 1):
                seq_errors += 1
            expected_seq = seq + 1
            data = params["data"]
            if params.get("encoding") is not None:
                raise RuntimeError("unexpected base64 output in a text benchmark")
            on_output(params["type"], data)
        elif method == "process.completed":
            params = message["params"]
            if params["seq"] != expected_seq:
                seq_errors += 1
            return {
                "seconds": time.perf_counter() - started,
                "first_output": (first_output or started) - started,
                "completed": params,
                "seq_errors": seq_errors,
                "frames": frames,
                "run": run_id,
            }
        elif message.get("id") == request_id:
            if "error" in message:
                raise RuntimeError(f"execute failed: {message['error']}")
            run_id = message["result"]["run"]
    raise TimeoutError(f"the run did not complete within {bound} s")


def firehose(
    port: int, total_bytes: int, line: str, path: str = "/", binary: bool = False
) -> dict[str, Any]:
    """W1: MB/s of output received by one client, on `path` (`/ws/mcp`: the original's
    framing, one frame per line), as JSON text or (`binary`) as binary output frames."""
    client = connect(port, path=path, subprotocol=BINARY_SUBPROTOCOL if binary else None)
    if client.binary != binary:
        raise RuntimeError(f"binary output frames asked {binary}, got {client.binary}")
    counts = Counter[str]()

    def count(stream: str, data: str | memoryview) -> None:
        if isinstance(data, memoryview) or data.isascii():
            counts[stream] += len(data)
        else:
            counts[stream] += len(data.encode())

    argv = firehose_argv(total_bytes, line)
    result = read_run(client, argv, count, lines_share_seq=path == ORIGINAL_PATH)
    client.close()
    return {
        "seconds": result["seconds"],
        "bytes": counts["stdout"],
        "stderr_bytes": counts["stderr"],
        "seq_errors": result["seq_errors"],
        "frames": result["frames"],
        "mb_per_s": counts["stdout"] / result["seconds"] / 1e6,
    }


def integrity_report(received: str, count: int) -> dict[str, int]:
    """Lost, duplicated and reordered lines of `seq 1 count` output as received."""
    lines = received.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    seen = Counter[int]()
    reordered = 0
    highest = 0
    malformed = 0
    for line in lines:
        try:
            value = int(line)
        except ValueError:
            malformed += 1
            continue
        if value < highest and seen[value] == 0:
            reordered += 1
        highest = max(highest, value)
        seen[value] += 1
    lost = sum(1 for value in range(1, count + 1) if seen[value] == 0)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    extra = sum(n for value, n in seen.items() if not 1 <= value <= count)
    return {
        "lost": lost,
        "duplicated": duplicated,
        "reordered": reordered,
        "malformed": malformed + extra,
    }


def integrity(port: int, count: int) -> dict[str, Any]:
    """W2: `seq 1 count`, lines/s, and an exact check of what arrived."""
    expected = "".join(f"{i}\n" for i in range(1, count + 1))
    cpu = self_cpu_seconds()  # building `expected` is not part of the measurement
    client = connect(port)
    pieces: list[str] = []
    stderr: list[str] = []

    def collect(stream: str, data: str) -> None:
        (pieces if stream == "stdout" else stderr).append(data)

    result = read_run(client, ["seq", "1", str(count)], collect)
    client.close()
    received = "".join(pieces)
    if received == expected:  # the common case: one comparison proves every count is 0
        report = {"lost": 0, "duplicated": 0, "reordered": 0, "malformed": 0}
    else:
        report = integrity_report(received, count)
    return {
        "seconds": result["seconds"],
        "lines": count,
        "lines_per_s": count / result["seconds"],
        "exact": received == expected,
        "stderr_bytes": sum(len(s) for s in stderr),
        "seq_errors": result["seq_errors"],
        "client_cpu": self_cpu_seconds() - cpu,
        **report,
    }


FLOOD_CHILD = """
import os, sys, time
block = (b"x" * 63 + b"\\n") * 1024
end = time.monotonic() + float(sys.argv[1])
written = 0
while time.monotonic() < end:
    written += os.write(1, block)
with open(sys.argv[2], "w") as f:
    f.write(str(written))
"""


def slow_client(port: int, flood_seconds: float, rate: float, tally: str) -> dict[str, Any]:
    """W3: the child floods for `flood_seconds` while this client drains `rate` bytes/s; then
    the client drains at full speed.  Produced (the child's own count) vs delivered."""
    client = connect(port, rcvbuf=64 * 1024)
    delivered = 0
    pace_started = time.perf_counter()
    pace_bytes = 0
    slow_until = pace_started + flood_seconds

    def pace(n: int) -> None:
        nonlocal pace_bytes
        now = time.perf_counter()
        if now >= slow_until:
            return
        pace_bytes += n
        ahead = pace_bytes / rate - (now - pace_started)
        if ahead > 0:
            time.sleep(min(ahead, slow_until - now))

    def count(stream: str, data: str) -> None:
        nonlocal delivered
        delivered += len(data) if data.isascii() else len(data.encode())

    client.recv_cap = 16 * 1024
    client.pace = pace
    argv = [sys.executable, "-c", FLOOD_CHILD, str(flood_seconds), tally]
    result = read_run(client, argv, count, bound=flood_seconds + READ_BOUND)
    client.close()
    with open(tally) as f:
        produced = int(f.read())
    os.unlink(tally)
    return {
        "seconds": result["seconds"],
        "produced": produced,
        "delivered": delivered,
        "dropped": produced - delivered,
        "slow_rate": pace_bytes / max(1e-9, min(result["seconds"], flood_seconds)),
    }
