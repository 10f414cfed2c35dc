"""`list` a page at a time, against a real daemon holding more runs than one frame takes.

Observed on main: `list` answered every run in one reply — 10,000 durable runs made it about
4.9 MB, and a hundred runs of long arguments over 1 MiB — which trio-websocket and python
`websockets` (1 MiB by default) cannot receive: the client's own library closed with 1009
and `list` never answered.  Now each reply holds at most 768 KiB of runs, with `next`, the
cursor of the rest; the client library (so `ccx ps`) reads every page.
"""

from __future__ import annotations

import subprocess
import sys

import orjson
import trio
from ccx_testing import open_client, run_daemon

from cc_executor.executor.client import open_connection
from cc_executor.protocol.params import LIST_PAGE_BYTES

RUNS = 100
ARGUMENT = "x" * 12 * 1024  # 100 of them: 1.2 MB of runs


async def test_a_list_of_more_than_a_frame_comes_in_pages_and_ccx_ps_shows_every_run() -> None:
    with trio.fail_after(120):
        async with run_daemon() as daemon:
            async with open_client(daemon.url) as client:
                started = [
                    await client.execute(argv=["true", ARGUMENT], durable=True) for _ in range(RUNS)
                ]
                # A client with the common 1 MiB limit reads the first page, and then the rest.
                seen: list[str] = []
                params: dict[str, object] = {}
                while True:
                    response = await client.request("list", params)
                    assert len(orjson.dumps(response)) < LIST_PAGE_BYTES + 64 * 1024
                    page = response["result"]
                    seen += [run["run"] for run in page["runs"]]
                    if "next" not in page:
                        break
                    params = {"after": page["next"]}
                assert seen == started  # oldest first, each once
                small = await client.call("list", limit=3)
                assert [run["run"] for run in small["runs"]] == started[:3]
                rest = await client.call("list", limit=1000, after=small["next"])
                assert rest["runs"][0]["run"] == started[3]
                error = await client.call_error("list", after="nonsense")
                assert error.code == -32602
                assert (await client.call_error("list", limit=0)).code == -32602
            async with open_connection(daemon.url) as conn:
                assert [status.run for status in await conn.list()] == started
            ps = await trio.run_process(
                [sys.executable, "-m", "cc_executor.executor", "ps", "--json", "--url", daemon.url],
                capture_stdout=True,
                stderr=subprocess.DEVNULL,
            )
            assert [run["run"] for run in orjson.loads(ps.stdout)] == started
