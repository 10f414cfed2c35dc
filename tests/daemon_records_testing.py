"""Helpers for the tests of daemons' records (executor/daemon/record.py): what is in
``daemons/``, what the daemon logged, marked processes and a sleeping run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
from ccx_testing import pids_in_file, wait_until
from durable_testing import DurableClient

from cc_executor.executor.daemon.record import directory_of
from cc_executor.supervision.marker import DAEMON_VAR


def records(state: str) -> list[str]:
    return sorted(os.listdir(directory_of(state)))


def logged(lines: list[str], event: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in lines if f'"{event}"' in line]


def marked_sleep(daemon_id: str) -> subprocess.Popen[bytes]:
    """A process carrying `daemon_id`'s marker, as every process of its runs does."""
    env = {**os.environ, DAEMON_VAR: daemon_id}
    return subprocess.Popen(["sleep", "300"], env=env)


async def start_sleeper(client: DurableClient, pid_file: Path, *, durable: bool = False) -> str:
    """A run whose root writes its pid to `pid_file`, then sleeps."""
    script = f"echo $$ >> {pid_file}; echo ready; exec sleep 300"
    argv = ["sh", "-c", script]
    run: str = (await client.call("execute", argv=argv, durable=durable))["run"]
    await client.wait_output(run, b"ready\n")
    await wait_until(lambda: pid_file.exists() and len(pids_in_file(str(pid_file))) == 1)
    return run
