"""A hypothesis state machine drives a live daemon and checks the protocol's invariants.

Hypothesis rules are synchronous, so the daemon and the clients live in a trio loop on a
background thread.  Each client connection is held open by a *keeper* task in that loop, which
runs the operations the rules hand it; a rule waits for its operation's result.

Invariants (checked on every frame by ``WireClient``, and after every step here): each request
id is answered once; run events have contiguous sequence numbers; ``process.completed`` is a
run's last event; once a run has completed, none of its processes is alive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
from ccx_testing import RpcError, WireClient, alive, open_client, run_daemon
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from threaded_trio import Keeper, ThreadedHost

Op = Callable[[WireClient], Awaitable[Any]]

# Each run prints the pid of a background child first, so the test can check it dies too.
SHORT = "sleep 60 & echo $!; seq 1 {n}; exit 0"
LONG = "sleep 60 & echo $!; i=0; while [ $i -lt 2000 ]; do echo $i; i=$((i+1)); sleep 0.01; done"
ECHO = "sleep 60 & echo $!; while IFS= read -r line; do printf '%s\\n' \"$line\"; done"


class TrioHost(ThreadedHost):
    """The loop on a thread, with one daemon process for the whole machine run."""

    async def setup(self, nursery: trio.Nursery) -> None:
        self.url = await nursery.start(self._hold)

    async def _hold(self, *, task_status: trio.TaskStatus[str]) -> None:
        async with run_daemon("--term-grace", "1") as daemon:
            task_status.started(daemon.url)
            await trio.sleep_forever()

    def connect_client(self) -> Keeper[WireClient]:
        return self.connect(open_client)


@attrs.define
class RunModel:
    run: str
    keeper: Keeper[WireClient]
    pids: list[int]
    kind: str
    paused: bool = False
    done: bool = False


class DaemonMachine(RuleBasedStateMachine):
    """Execute / pause / resume / cancel / stdin / disconnect against a live daemon."""

    host: TrioHost
    executed = 0  # runs started over all examples (a check that the machine did work)
    keepers = Bundle("keepers")
    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.models: list[RunModel] = []

    @initialize(target=keepers)
    def first_connection(self) -> Keeper[WireClient]:
        return self.host.connect_client()

    @rule(target=keepers)
    def connect(self) -> Keeper[WireClient]:
        return self.host.connect_client()

    @rule(
        target=runs,
        keeper=keepers,
        kind=st.sampled_from(["short", "long", "echo"]),
        n=st.integers(1, 3000),
    )
    def execute(self, keeper: Keeper[WireClient], kind: str, n: int) -> Any:
        if keeper.closed:
            return multiple()
        script = {"short": SHORT.format(n=n), "long": LONG, "echo": ECHO}[kind]

        async def op(client: WireClient) -> RunModel:
            run = await client.execute(
                argv=["sh", "-c", script], stdin="pipe" if kind == "echo" else "null"
            )
            record = await client.wait_output(run, b"\n")
            background = int(bytes(record.stdout).split(b"\n", 1)[0])
            pid = (await client.call("status", run=run))["pid"]
            return RunModel(run, keeper, [pid, background], kind)

        model: RunModel = self.host.run(keeper.submit, op)
        self.models.append(model)
        DaemonMachine.executed += 1
        return model

    def _control(self, model: RunModel, kind: str) -> None:
        if model.keeper.closed:
            return

        async def op(client: WireClient) -> Any:
            try:
                return await client.call("control", type=kind, run=model.run)
            except RpcError as exc:
                return exc

        reply = self.host.run(model.keeper.submit, op)
        self._observe(model)
        if isinstance(reply, RpcError):
            # Only a run that has ended by itself, or a wrong transition, may refuse.
            assert reply.code == -32005, reply
            state = reply.data["state"]
            if state == "completed":
                model.done = True
            elif state == "ending":
                # The main process has exited (or a cancel is under way): its leftovers are
                # being swept, and nothing but the completion can happen any more.
                assert kind in ("PAUSE", "RESUME")
            elif kind == "PAUSE":
                assert model.paused
                assert state == "paused"
            elif kind == "RESUME":
                assert not model.paused
                assert state in ("running", "ending")
            return
        assert not model.done, f"{kind} succeeded on a completed run"
        if kind == "PAUSE":
            assert not model.paused
            model.paused = True
        elif kind == "RESUME":
            assert model.paused
            model.paused = False
        else:
            model.done = True
            record = self.host.run(model.keeper.submit, lambda c: c.wait_completed(model.run))
            assert record.completed["outcome"] in ("cancelled", "exited")

    @rule(model=runs)
    def pause(self, model: RunModel) -> None:
        self._control(model, "PAUSE")

    @rule(model=runs)
    def resume(self, model: RunModel) -> None:
        self._control(model, "RESUME")

    @rule(model=consumes(runs))
    def cancel(self, model: RunModel) -> None:
        self._control(model, "CANCEL")

    @rule(
        model=runs,
        text=st.text(st.characters(codec="utf-8", exclude_characters="\n\0"), max_size=50),
    )
    def stdin(self, model: RunModel, text: str) -> None:
        if model.keeper.closed or model.kind != "echo" or model.paused:
            return

        async def op(client: WireClient) -> None:
            response = await client.request("stdin", {"run": model.run, "data": text + "\n"})
            if "error" in response:
                assert response["error"]["code"] == -32005
                return
            await client.wait_output(model.run, text.encode() + b"\n")

        self.host.run(model.keeper.submit, op)

    @rule(keeper=consumes(keepers))
    def disconnect(self, keeper: Keeper[WireClient]) -> None:
        if keeper.closed:
            return

        async def op(client: WireClient) -> None:
            keeper.closed = True  # set in the trio thread: the keeper ends after this op
            await client.ws._stream.aclose()

        self.host.run(keeper.submit, op)
        for model in self.models:
            if model.keeper is keeper:
                model.done = True

    def _observe(self, model: RunModel) -> None:
        assert model.keeper.client is not None
        record = model.keeper.client.runs.get(model.run)
        if record is not None and record.completed is not None:
            model.done = True

    @invariant()
    def completed_runs_leave_nothing_alive(self) -> None:
        for model in self.models:
            if model.keeper.closed:
                # Ended by the disconnect: give the ladder its (bounded) time.
                self.host.run(_wait_gone, model.pids)
                continue
            self._observe(model)
            client = model.keeper.client
            assert client is not None
            record = client.runs.get(model.run)
            if record is not None and record.completed is not None:
                assert not [pid for pid in model.pids if alive(pid)], record.completed

    def teardown(self) -> None:
        for model in self.models:
            if not model.keeper.closed and not model.done:
                self._control(model, "CANCEL")
        for model in self.models:
            self.host.run(_wait_gone, model.pids)


async def _wait_gone(pids: list[int]) -> None:
    with trio.fail_after(15):
        while any(alive(pid) for pid in pids):  # noqa: ASYNC110 - only /proc can tell
            await trio.sleep(0.01)


@pytest.mark.slow
def test_daemon_state_machine() -> None:
    with TrioHost() as host:
        DaemonMachine.host = host
        run_state_machine_as_test(
            DaemonMachine,
            settings=settings(
                max_examples=15,
                stateful_step_count=12,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
        assert DaemonMachine.executed > 0, "the machine must have started runs"
