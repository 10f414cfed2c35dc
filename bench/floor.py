"""The spawn floor beside W5: `python -m bench.floor CONNECTIONS LINES`.

The least a Python process can do for W5's work: spawn the same `seq 1 LINES` children, all at
once (asyncio, `create_subprocess_exec`, stdout on a pipe), read each one's output to EOF, check
it and reap the child. No daemon, no WebSocket, no containment. It prints one JSON object: wall
seconds from the first spawn to the last reap, and this process's CPU seconds for it (user +
system, children excluded), so the daemon's per-run cost can be set beside the floor's.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from bench.daemon import raise_fd_limit
from bench.procfs import self_cpu_seconds


async def _one(count: int, expected: bytes) -> bool:
    process = await asyncio.create_subprocess_exec(
        "seq",
        "1",
        str(count),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    return process.returncode == 0 and out == expected


async def _main(connections: int, count: int) -> dict[str, float | int]:
    expected = "".join(f"{i}\n" for i in range(1, count + 1)).encode()
    cpu = self_cpu_seconds()
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(_one(count, expected) for _ in range(connections)))
    return {
        "wall": time.perf_counter() - started,
        "cpu": self_cpu_seconds() - cpu,
        "successes": sum(outcomes),
    }


def main() -> None:
    raise_fd_limit()
    connections, count = int(sys.argv[1]), int(sys.argv[2])
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(_main(connections, count))))


if __name__ == "__main__":
    main()
