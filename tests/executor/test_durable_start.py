"""The daemon serves while it reads its state directory: new runs start at once, and every
lookup of a run (list, status, attach, control, the MCP tools) waits until the journals are read
— it never answers from half a directory.

The slow read is a stand-in: the journals are held back by a gate in front of the function that
reads them (the real fault it stands for is a state directory on a slow or hung volume, which
cannot be made here), everything else is real — a daemon on a real state directory and real
clients on loopback.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from ccx_testing import make_config, open_client, start_daemon
from faults_journal_testing import write_old_journals
from faults_net_testing import http_get

from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.runs import recovery
from cc_executor.executor.runs.recovery import open_journals as recovery_open
from cc_executor.supervision.journal import JournalConfig


def journals(config: ServerConfig) -> Path:
    return Path(config.state_dir) / "journals"


@contextlib.contextmanager
def _released_at_the_end(release: threading.Event) -> Iterator[None]:
    try:
        yield
    finally:
        release.set()  # a failed test must not leave the reading thread waiting


async def test_runs_start_while_the_state_directory_is_read_and_lookups_wait_for_it(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    await write_old_journals(journals(config), ["old-0", "old-1", "old-2"], lost={"old-2"})
    release = threading.Event()

    def held_back(paths: list[str], journal_config: JournalConfig) -> Any:
        assert release.wait(60), "the test never released the state directory"
        return recovery_open(paths, journal_config)

    monkeypatch.setattr(recovery, "open_journals", held_back)
    with trio.fail_after(60), _released_at_the_end(release):
        served = await start_daemon(nursery, config)
        assert (await http_get(served.port, "/readyz")).startswith(b"HTTP/1.1 200")
        answers: dict[str, Any] = {}

        async def ask(name: str, method: str, **params: Any) -> None:
            async with open_client(served.url) as asking:
                answers[name] = await asking.call(method, **params)

        async with open_client(served.url) as client, trio.open_nursery() as asking:
            asking.start_soon(ask, "list", "list")
            asking.start_soon(partial(ask, "status", "status", run="old-0"))
            asking.start_soon(ask, "daemon", "status")
            # New runs need nothing of the state directory, durable ones neither.
            fresh = await client.execute(argv=["echo", "fresh"])
            assert bytes((await client.wait_completed(fresh)).stdout) == b"fresh\n"
            durable = await client.execute(argv=["echo", "kept"], durable=True)
            assert bytes((await client.wait_completed(durable)).stdout) == b"kept\n"
            await trio.testing.wait_all_tasks_blocked(0.05)
            assert answers == {}  # none answered from a half-read directory
            release.set()
        listed = {run["run"]: run for run in answers["list"]["runs"]}
        assert {"old-0", "old-1", "old-2", durable} <= set(listed)
        assert listed["old-2"]["outcome"] == "lost"
        assert answers["status"]["outcome"] == "exited"
        assert answers["daemon"]["durable_runs"] == 4
        async with open_client(served.url) as client:
            await client.call("attach", run="old-1", from_seq=0)
            assert bytes((await client.wait_completed("old-1")).stdout) == b"old-1\n"


async def test_a_failed_read_of_the_state_directory_ends_the_wait_and_is_counted(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    await write_old_journals(journals(config), ["old-0"])

    def broken(paths: list[str], journal_config: JournalConfig) -> Any:
        raise RuntimeError("a bug in reading journals")  # stands in for any unexpected error

    monkeypatch.setattr(recovery, "open_journals", broken)
    with trio.fail_after(30):
        served = await start_daemon(nursery, config)
        async with open_client(served.url) as client:
            assert (await client.call("list"))["runs"] == []  # answered, not left waiting
            run = await client.execute(argv=["echo", "still serving"])
            assert bytes((await client.wait_completed(run)).stdout) == b"still serving\n"
    assert served.daemon.metrics.internal_errors == {"durable.recover": 1}
