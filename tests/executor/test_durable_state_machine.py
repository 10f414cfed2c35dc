"""A hypothesis state machine over durable runs: disconnects, attaches from any seq, restarts.

The pattern of test_state_machine.py (a real daemon process, driven from a trio loop on a
thread, one keeper task per connection), with a daemon that can be SIGKILLed and restarted on
the same state directory.

Exactly-once invariant: every attachment receives the run's events after its from_seq with
contiguous seqs and nothing after the completion (``WireClient`` checks each frame), and every
event any client ever received under a seq is the same event the journal replays under that
seq at the end.  Each run's final replay is its whole output (or, for a run lost to a restart,
a prefix of it), and no process of a lost run survives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from ccx_testing import WireClient, alive, run_daemon
from durable_testing import DurableClient, open_durable_client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from threaded_trio import Keeper, ThreadedHost

Op = Callable[[DurableClient], Awaitable[Any]]
SLOW = "i=0; while [ $i -lt {n} ]; do echo $i; i=$((i+1)); sleep 0.005; done"


def expected_output(kind: str, n: int) -> bytes:
    first = 1 if kind == "seq" else 0
    return "".join(f"{i}\n" for i in range(first, first + n)).encode()


class Host(ThreadedHost):
    """The loop on a thread, holding a daemon that can be SIGKILLed and restarted."""

    def __init__(self, state_dir: str) -> None:
        super().__init__()
        self.state_dir = state_dir
        self._kill: trio.Event | None = None
        self._gone: trio.Event | None = None
        self._daemons: trio.Nursery | None = None

    async def setup(self, nursery: trio.Nursery) -> None:
        self._daemons = nursery
        await self._start_daemon()

    async def _start_daemon(self) -> None:
        assert self._daemons is not None
        self.url = await self._daemons.start(self._hold)

    async def _hold(self, *, task_status: trio.TaskStatus[str]) -> None:
        kill, gone = trio.Event(), trio.Event()
        self._kill, self._gone = kill, gone
        try:
            async with run_daemon("--state-dir", self.state_dir, "--term-grace", "1") as daemon:
                task_status.started(daemon.url)
                await kill.wait()
                daemon.process.kill()  # SIGKILL: no chance to journal anything more
                await daemon.process.wait()
        finally:
            gone.set()

    async def restart(self) -> None:
        assert self._kill is not None
        assert self._gone is not None
        gone = self._gone
        self._kill.set()
        await gone.wait()
        await self._start_daemon()

    def connect_client(self) -> Keeper[DurableClient]:
        return self.connect(open_durable_client)


@attrs.define
class RunModel:
    run: str
    kind: str
    n: int
    pid: int
    maybe_lost: bool = False  # a restart happened before we saw it complete
    seen: dict[int, tuple[Any, ...]] = attrs.field(factory=dict)  # seq -> event, any client


def event_key(event: dict[str, Any]) -> tuple[Any, ...]:
    if event["method"] == "process.output":
        return (event["method"], event["type"], event["data"], event.get("encoding"))
    if event["method"] == "process.completed":
        return (event["method"], event["outcome"], event.get("exit_code"))
    return (event["method"],)


class DurableMachine(RuleBasedStateMachine):
    host: Host
    executed = 0
    restarts = 0
    keepers = Bundle("keepers")
    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, RunModel] = {}
        self.all_keepers: list[Keeper[DurableClient]] = []

    def _keeper(self) -> Keeper[DurableClient]:
        keeper = self.host.connect_client()
        self.all_keepers.append(keeper)
        return keeper

    @initialize(target=keepers)
    def first_connection(self) -> Keeper[DurableClient]:
        return self._keeper()

    @rule(target=keepers)
    def connect(self) -> Keeper[DurableClient]:
        return self._keeper()

    def _submit(self, keeper: Keeper[DurableClient], op: Op) -> Any:
        if keeper.closed:
            return None
        try:
            return self.host.run(keeper.submit, op)
        finally:
            if keeper.client is not None:
                self._harvest(keeper.client)

    def _harvest(self, client: WireClient) -> None:
        for run, record in client.runs.items():
            model = self.models.get(run)
            if model is None:
                continue
            for event in record.events:
                key = event_key(event)
                previous = model.seen.setdefault(event["seq"], key)
                assert previous == key, f"seq {event['seq']} of {run}: {previous} then {key}"

    @rule(
        target=runs,
        keeper=keepers,
        kind=st.sampled_from(["seq", "slow"]),
        n=st.integers(1, 20_000),
    )
    def execute(self, keeper: Keeper[DurableClient], kind: str, n: int) -> Any:
        n = n if kind == "seq" else n % 400 + 1
        argv = ["seq", "1", str(n)] if kind == "seq" else ["sh", "-c", SLOW.format(n=n)]

        async def op(client: DurableClient) -> RunModel:
            result = await client.call("execute", argv=argv, durable=True)
            return RunModel(result["run"], kind, n, result["pid"])

        model = self._submit(keeper, op)
        if model is None:
            return multiple()  # the keeper's connection is gone: no run
        self.models[model.run] = model
        DurableMachine.executed += 1
        return model

    @rule(keeper=keepers, model=runs, where=st.floats(0, 1))
    def attach(self, keeper: Keeper[DurableClient], model: RunModel, where: float) -> None:
        async def op(client: DurableClient) -> None:
            # Detach first (idempotent): after its reply no event of the run is in flight, so
            # the client's record of the run can restart at from_seq.
            await client.call("detach", run=model.run)
            status = await client.call("status", run=model.run)
            from_seq = int(status["last_seq"] * where)
            attached = await client.attach(model.run, from_seq)
            record = client.runs[model.run]
            if status["state"] == "completed" and from_seq >= attached["last_seq"]:
                # From the completion's own seq nothing follows: the attachment ends at once,
                # and no event of the run arrives (the reply to a later request says so).
                await client.call("status")
                assert (record.last_seq, record.completed, record.events) == (from_seq, None, [])
                return
            with trio.fail_after(20):
                while record.completed is None and record.last_seq < from_seq + 3:
                    await client.receive()

        self._submit(keeper, op)

    @rule(keeper=keepers, model=runs)
    def detach(self, keeper: Keeper[DurableClient], model: RunModel) -> None:
        async def op(client: DurableClient) -> None:
            await client.call("detach", run=model.run)
            before = client.runs.get(model.run)
            seen = None if before is None else before.last_seq
            await client.call("status")  # any event of the run would have arrived before this
            after = client.runs.get(model.run)
            assert (None if after is None else after.last_seq) == seen

        self._submit(keeper, op)

    @rule(keeper=keepers)
    def disconnect(self, keeper: Keeper[DurableClient]) -> None:
        async def op(client: DurableClient) -> None:
            keeper.closed = True
            await client.ws._stream.aclose()

        self._submit(keeper, op)

    @rule()
    def restart(self) -> None:
        for model in self.models.values():
            model.maybe_lost = True
        self.host.run(self.host.restart)
        for keeper in self.all_keepers:
            keeper.closed = True  # their connections died with the daemon
        DurableMachine.restarts += 1

    @invariant()
    def every_event_seen_is_the_same_everywhere(self) -> None:
        for keeper in self.all_keepers:
            if keeper.client is not None:
                self._harvest(keeper.client)

    def teardown(self) -> None:
        if not self.models:
            return
        keeper = self._keeper()

        async def final(client: DurableClient, model: RunModel) -> None:
            await client.attach(model.run, 0)
            record = await client.wait_completed(model.run)
            assert record.completed is not None
            full = expected_output(model.kind, model.n)
            if record.completed["outcome"] == "lost":
                assert model.maybe_lost
                assert full.startswith(bytes(record.stdout))
            else:
                assert record.completed["outcome"] == "exited", record.completed
                assert bytes(record.stdout) == full
            replay = {e["seq"]: event_key(e) for e in record.events}
            for seq, key in model.seen.items():
                assert replay.get(seq) == key, f"seq {seq} of {model.run}"
            with trio.fail_after(15):
                while alive(model.pid):  # noqa: ASYNC110 - only /proc can tell
                    await trio.sleep(0.01)

        for model in self.models.values():
            self.host.run(keeper.submit, lambda c, m=model: final(c, m))


@pytest.mark.slow
def test_durable_state_machine(tmp_path: Path) -> None:
    with Host(str(tmp_path / "state")) as host:
        DurableMachine.host = host
        # Hypothesis starts from small examples: twelve of them, by chance, can all end
        # before a run starts (seen once in a full check). Another round then, at most three:
        # the check is that the machine did work, not which examples it drew.
        for _ in range(3):
            run_state_machine_as_test(
                DurableMachine,
                settings=settings(
                    max_examples=12,
                    stateful_step_count=10,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
            if DurableMachine.executed > 0:
                break
    assert DurableMachine.executed > 0, "the machine must have started runs"
