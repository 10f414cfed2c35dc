"""Helpers for durable-run tests: attach with the client's seq checks, abrupt disconnects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from ccx_testing import RunRecord, WireClient, open_client

from cc_executor.protocol.methods import RUN_EVENTS

BIG = 64 * 1024 * 1024


class DurableClient(WireClient):
    """A WireClient that knows ``process.gap``: the run's next event may skip seqs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gaps: list[dict[str, Any]] = []

    def _absorb(self, message: dict[str, Any]) -> None:
        if message.get("method") == "process.gap":
            params = message["params"]
            record = self.runs.setdefault(params["run"], RunRecord(params["run"]))
            assert params["seq"] == record.last_seq + 1, params
            self.gaps.append(params)
            record.last_seq = -1  # any seq may follow
            self.notifications.append(message)
            return
        if message.get("method") in RUN_EVENTS:
            following = self.runs.get(message["params"]["run"])
            if following is not None and following.last_seq == -1:
                following.last_seq = message["params"]["seq"] - 1
        super()._absorb(message)

    async def attach(self, run: str, from_seq: int = 0) -> dict[str, Any]:
        """Attach from `from_seq`; the run's record restarts there (events after it follow)."""
        self.runs[run] = RunRecord(run, last_seq=from_seq)
        result: dict[str, Any] = await self.call("attach", run=run, from_seq=from_seq)
        return result


@asynccontextmanager
async def open_durable_client(url: str, *, binary: bool = False) -> AsyncIterator[DurableClient]:
    async with open_client(url, max_message_size=BIG, binary=binary) as plain:
        client = DurableClient(plain.ws)
        client._ids = plain._ids
        yield client


async def drop(client: WireClient) -> None:
    """Vanish without a close handshake (as a crashed client or a cut network would)."""
    await client.ws._stream.aclose()


async def wait_state(client: WireClient, run: str, state: str) -> dict[str, Any]:
    """Poll ``status`` until the run reaches `state` (there is no event for an unattached run)."""
    with trio.fail_after(60):
        while True:
            status: dict[str, Any] = await client.call("status", run=run)
            if status["state"] == state:
                return status
            await trio.sleep(0.02)
