"""The measuring client as a separate process (bench/client.py): start it, wait for its JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.daemon import Daemon

ROOT = Path(__file__).resolve().parent.parent
CLIENT_BOUND = 180.0


def start_spec(workload: str, **args: Any) -> subprocess.Popen[bytes]:
    """Start `python -m bench.client` on one workload's spec."""
    spec = orjson.dumps({"workload": workload, **args})
    return subprocess.Popen(
        [sys.executable, "-m", "bench.client", spec.decode()],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def start_client(daemon: Daemon, workload: str, **args: Any) -> subprocess.Popen[bytes]:
    return start_spec(workload, port=daemon.port, **args)


def finish_client(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    try:
        out, _ = process.communicate(timeout=CLIENT_BOUND)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"the benchmark client failed (exit {process.returncode})")
    result: dict[str, Any] = orjson.loads(out)
    return result


def run_client(daemon: Daemon, workload: str, **args: Any) -> dict[str, Any]:
    return finish_client(start_client(daemon, workload, **args))
