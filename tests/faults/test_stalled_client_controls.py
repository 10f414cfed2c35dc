"""Controls of a run whose output waits for a client that does not read.

Observed on main (a real daemon, `yes` started by a client that then stopped reading, controls
from a second connection): PAUSE, RESUME and PAUSE were answered, the next RESUME never was —
nor would a CANCEL have been.  The second PAUSE's event waited for room in the run's channel
(the pump waits for the stalled socket) while holding the run's control lock, and every later
control of that run, from any connection, waited behind it.  Now a state change is queued
without waiting (held in order, a bounded number of them), every control is answered, one
beyond the bound is refused with -32005, and the stalled client, once it reads, gets every
event in order; if it vanishes instead (a real RST) with state changes held, its run ends as
the run of any connection that is gone.
"""

from __future__ import annotations

import orjson
import trio
from ccx_testing import RpcError, WireClient, open_client, run_daemon
from faults_net_testing import reset

from bench.rawws import RawWebSocket, open_raw_websocket
from cc_executor.supervision.run import MAX_HELD_STATES
from cc_executor.supervision.testing import marked_processes

CONTROLS = 200  # a bound: the run's events are held from the first few on


async def _message(raw: RawWebSocket) -> dict:  # type: ignore[type-arg]
    opcode, payload = await raw.read_frame()
    assert opcode == 0x1, opcode
    message: dict = orjson.loads(payload)  # type: ignore[type-arg]
    return message


async def _start_yes(stalled: RawWebSocket) -> str:
    """`yes` started by `stalled`, which from then on reads nothing: the socket fills, then
    the pump."""
    assert (await _message(stalled))["method"] == "connected"
    request = {"jsonrpc": "2.0", "id": 1, "method": "execute", "params": {"argv": ["yes"]}}
    await stalled.send_frame(0x1, orjson.dumps(request))
    while (reply := await _message(stalled)).get("id") != 1:
        pass
    run: str = reply["result"]["run"]
    return run


async def _hold_state_changes(other: WireClient, run: str) -> list[str]:
    """PAUSE, RESUME, ... from `other` until one is refused because the run's state changes
    wait to be delivered; the controls answered, in order."""
    answered: list[str] = []
    refused: RpcError | None = None
    for n in range(CONTROLS):
        action = "PAUSE" if n % 2 == 0 else "RESUME"
        with trio.fail_after(10):  # a bound: each control is answered at once
            try:
                await other.call("control", type=action, run=run)
            except RpcError as exc:
                refused = exc
                break
        answered.append(action)
    assert refused is not None, "the run's state changes were never held"
    assert refused.code == -32005
    assert "wait to be delivered" in refused.message
    # The bound holds: no more state changes were taken than the channel and the held ones
    # make room for.
    assert len(answered) >= MAX_HELD_STATES
    return answered


async def test_controls_of_a_run_held_by_a_client_that_does_not_read_are_all_answered() -> None:
    with trio.fail_after(120):
        async with run_daemon() as daemon, open_raw_websocket(daemon.port) as stalled:
            run = await _start_yes(stalled)
            async with open_client(daemon.url) as other:
                answered = await _hold_state_changes(other, run)
                with trio.fail_after(10):
                    result = await other.call("control", type="CANCEL", run=run)
                assert result["status"] == "canceled"
            # The stalled client reads again: every event, numbered without a gap, the state
            # changes in the order they were answered, the completion last.
            seqs: list[int] = []
            states: list[str] = []
            while True:
                message = await _message(stalled)
                params = message.get("params", {})
                if params.get("run") != run or "seq" not in params:
                    continue
                seqs.append(params["seq"])
                if message["method"] in ("process.paused", "process.resumed"):
                    states.append("PAUSE" if message["method"] == "process.paused" else "RESUME")
                if message["method"] == "process.completed":
                    assert params["status"] == "canceled"
                    break
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert states == answered
            assert not marked_processes(run)
            assert daemon.process.returncode is None
            assert not [line for line in daemon.stderr_lines if "Traceback" in line]


async def test_a_reset_of_the_stalled_client_with_state_changes_held_ends_its_run() -> None:
    """The client that started the run and stopped reading vanishes (a real RST) while its
    run's state changes are held: the run ends with its connection, as any run of a
    connection that is gone, nothing of it is left, and the daemon serves on."""
    with trio.fail_after(120):
        async with run_daemon() as daemon, open_raw_websocket(daemon.port) as stalled:
            run = await _start_yes(stalled)
            async with open_client(daemon.url) as other:
                await _hold_state_changes(other, run)
                reset(stalled.stream.socket)
                with trio.fail_after(30):  # a bound: the ladder of a run whose client is gone
                    # Only `status` tells another connection that this run has ended.
                    while (await other.call("status", run=run))["state"] != "completed":  # noqa: ASYNC110
                        await trio.sleep(0.05)
                status = await other.call("status", run=run)
                assert (status["status"], status["reason"]) == ("canceled", "client disconnected")
                with trio.fail_after(10):
                    refused = await other.call_error("control", type="PAUSE", run=run)
                assert refused.code == -32005  # invalid state: it has completed
                assert "completed" in refused.message
                assert not marked_processes(run)
                fresh = await other.execute(argv=["echo", "served"])
                assert (await other.wait_completed(fresh)).stdout == b"served\n"
            assert daemon.process.returncode is None
            assert not [line for line in daemon.stderr_lines if "Traceback" in line]
