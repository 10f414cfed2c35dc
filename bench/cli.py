"""W6: `ccx run -- true` and `ccx ps`, each as a whole process, beside a raw client.

The raw client (`python -m bench.cli run|ps PORT`) is the least a Python program on the same
stack can do for the same exchange: import trio and trio-websocket, connect, read the greeting,
send `execute {argv: ["true"]}` (or `list {}`), read until the completion (or the reply), close.
ccx does that plus its argument parsing, its client library and its output. Calls alternate
between the two so that the box's load falls on both alike; each figure is a median of wall
times, process start to exit.

Both sides run from byte-compiled modules, as an installed ccx does (pip compiles a package's
modules when it installs it, and trio's and trio-websocket's already are): the editable install
a checkout has links to the sources instead, and with PYTHONDONTWRITEBYTECODE set Python would
compile each of ccx's ~40 modules afresh on every call, a cost no user of ccx pays.
"""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CALL_BOUND = 60.0
CCX = [sys.executable, "-m", "cc_executor.executor"]
EXCHANGES = {"run": ["run", "--", "true"], "ps": ["ps"]}


def timed(argv: list[str]) -> float:
    """Wall seconds of one process, start to exit; it must succeed."""
    started = time.monotonic()
    subprocess.run(
        argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=CALL_BOUND
    )
    return time.monotonic() - started


def byte_compile() -> None:
    """Write the .pyc files of ccx's package and of the raw client, as pip does on install."""
    import cc_executor

    for folder in [*cc_executor.__path__, str(Path(__file__).parent)]:
        compileall.compile_dir(folder, quiet=1)


def compare(port: int, calls: int) -> dict[str, Any]:
    """Median wall seconds of ccx and of the raw client for each exchange, and their ratio."""
    byte_compile()
    url = f"ws://127.0.0.1:{port}/"
    figures: dict[str, Any] = {}
    for name, words in EXCHANGES.items():
        ccx: list[float] = []
        raw: list[float] = []
        for _ in range(calls):
            raw.append(timed([sys.executable, "-m", "bench.cli", name, str(port)]))
            ccx.append(timed([*CCX, "--url", url, *words]))
        figures[f"{name}_ccx_s"] = statistics.median(ccx)
        figures[f"{name}_raw_s"] = statistics.median(raw)
        figures[f"{name}_ratio"] = figures[f"{name}_ccx_s"] / figures[f"{name}_raw_s"]
    return figures


async def raw_exchange(name: str, port: int) -> None:
    """The raw client's side: one request, its answer, a close."""
    import orjson
    from trio_websocket import open_websocket_url

    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await ws.get_message()  # the greeting
        if name == "run":
            params: dict[str, Any] = {"argv": ["true"]}
            request = {"jsonrpc": "2.0", "id": 1, "method": "execute", "params": params}
            await ws.send_message(orjson.dumps(request).decode())
            while orjson.loads(await ws.get_message()).get("method") != "process.completed":
                pass
        else:
            request = {"jsonrpc": "2.0", "id": 1, "method": "list", "params": {}}
            await ws.send_message(orjson.dumps(request).decode())
            await ws.get_message()


if __name__ == "__main__":
    import trio

    trio.run(raw_exchange, sys.argv[1], int(sys.argv[2]))
