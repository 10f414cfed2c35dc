"""The client library against a live daemon over loopback: every operation, every error type.

Durable runs, attach and reconnecting are tested only when the daemon announces the `durable`
and `attach` capabilities (checked at run time from the `connected` greeting).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from collections.abc import Sequence

import pytest
import trio
from ccx_testing import (
    Served,
    all_stopped,
    make_config,
    run_daemon,
    start_daemon,
    unused_url,
    wait_until,
)

from cc_executor.executor.client import (
    ClientConfig,
    Completed,
    ConnectionLost,
    DaemonUnavailable,
    InvalidParamsError,
    InvalidStateError,
    JournalError,
    LimitExceededError,
    Output,
    Paused,
    PolicyRefusedError,
    Resumed,
    RunEvent,
    RunNotFoundError,
    SpawnFailedError,
    exit_status,
    open_connection,
)
from cc_executor.protocol.notices import RunCompleted, RunOutput

TIMEOUT = 20


def collect(events: Sequence[RunEvent], stream: str) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Output) and e.stream == stream)


def assert_contiguous(events: Sequence[RunEvent]) -> None:
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert isinstance(events[-1], Completed)


async def test_execute_streams_both_outputs_and_completes(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            assert conn.greeting.server == "cc-executor"
            # What it serves beyond the original's methods, announced before anything is asked.
            assert {"durable", "attach", "claude", "claude.session", "binary"} <= conn.capabilities
            run = await conn.execute(["sh", "-c", "echo out; echo err >&2; printf '\\377'; exit 3"])
            events = [event async for event in run]
    assert_contiguous(events)
    assert events[0].seq == 1
    assert collect(events, "stdout") == b"out\n\xff"  # base64 chunk decoded to bytes
    assert collect(events, "stderr") == b"err\n"
    done = events[-1]
    assert isinstance(done, Completed)
    assert (done.outcome, done.exit_code, exit_status(done)) == ("exited", 3, 3)
    # The client's events are the protocol's own classes, decoded from what the daemon encoded.
    assert {type(event) for event in events} <= {RunOutput, RunCompleted}
    assert done.completion.status == "failed"


async def test_command_string_cwd_env_and_wait(served: Served, tmp_path: os.PathLike[str]) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            run = await conn.execute(
                "sh -c 'pwd; echo $GREETING'", cwd=str(tmp_path), env={"GREETING": "hi"}
            )
            events = [event async for event in run]
            assert collect(events, "stdout") == f"{tmp_path}\nhi\n".encode()
            # wait() on an unread run drains it and returns the outcome
            other = await conn.execute(["sh", "-c", "seq 1 10000; exit 4"])
            completed = await other.wait()
            assert completed.exit_code == 4
            assert completed.stdout_bytes == len(b"".join(b"%d\n" % i for i in range(1, 10001)))


async def test_pause_resume_events_and_cancel(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            run = await conn.execute(["sh", "-c", "echo ready; sleep 30"])
            events = []
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    async for event in run:
                        events.append(event)

                nursery.start_soon(read)
                await run.pause()
                with pytest.raises(InvalidStateError) as info:
                    await run.pause()
                assert info.value.state == "paused"
                await run.resume()
                assert await run.cancel() == "sigterm"
            completed = await run.wait()
    kinds = [type(e) for e in events if not isinstance(e, Output)]
    assert kinds == [Paused, Resumed, Completed]
    assert completed.outcome == "cancelled"
    assert exit_status(completed) == 128 + 15
    assert_contiguous(events)


async def test_signal_and_status(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            run = await conn.execute(
                ["sh", "-c", "trap 'echo usr1; exit 5' USR1; echo up; while :; do sleep 0.01; done"]
            )
            async for event in run:
                if isinstance(event, Output) and b"up" in event.data:
                    break
            status = await run.status()
            assert (status.run, status.state, status.pid) == (run.id, "running", run.pid)
            await run.signal("USR1")
            completed = await run.wait()
            assert completed.exit_code == 5
            listed = await conn.list()
            assert run.id in {s.run for s in listed}
            daemon = await conn.status()
            assert daemon.server == "cc-executor"
            assert daemon.runs_started >= 1


async def test_write_stdin_and_close_stdin(served: Served) -> None:
    payload = bytes(range(256)) * 64  # not UTF-8: goes as base64
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            run = await conn.execute(["sh", "-c", "cat; echo done >&2"], stdin=True)
            async with trio.open_nursery() as nursery:
                events: list[RunEvent] = []

                async def read() -> None:
                    events.extend([event async for event in run])

                nursery.start_soon(read)
                assert await run.write_stdin(payload) == len(payload)
                await run.write_stdin("text\n")
                await run.close_stdin()
    assert collect(events, "stdout") == payload + b"text\n"
    assert collect(events, "stderr") == b"done\n"


async def test_unread_run_blocks_the_child_not_memory(served: Served) -> None:
    """Back-pressure: nobody reads, so the child ends up blocked writing its pipe."""
    size = 64 * 1024 * 1024
    config = ClientConfig(run_buffer=4)
    with trio.fail_after(60):
        async with open_connection(served.url, config=config) as conn:
            run = await conn.execute(["head", "-c", str(size), "/dev/zero"])
            pid = run.pid
            assert pid is not None

            def blocked_in_write() -> bool:
                try:
                    with open(f"/proc/{pid}/wchan") as f:
                        return "pipe" in f.read()  # pipe_write, anon_pipe_write, ...
                except OSError:
                    return False

            await wait_until(blocked_in_write, bound=30)
            digest = hashlib.sha256()
            total = 0
            async for event in run:
                if isinstance(event, Output):
                    digest.update(event.data)
                    total += len(event.data)
    assert total == size
    assert digest.hexdigest() == hashlib.sha256(bytes(size)).hexdigest()


async def test_closed_stream_drops_events_and_wait_still_returns(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            run = await conn.execute(["sh", "-c", "seq 1 100000"])
            run.close_stream()
            other = await conn.execute(["echo", "still flowing"])
            events = [event async for event in other]
            assert collect(events, "stdout") == b"still flowing\n"
            assert (await run.wait()).exit_code == 0


async def test_errors_are_typed_with_the_servers_message(nursery: trio.Nursery) -> None:
    served = await start_daemon(
        nursery, make_config(allowed_commands=("echo", "sleep"), max_runs_per_connection=1)
    )
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            with pytest.raises(PolicyRefusedError) as refused:
                await conn.execute(["cat"])
            assert refused.value.rule == "allowed_commands"
            assert "allow-list" in refused.value.message
            with pytest.raises(RunNotFoundError):
                await conn.run_status("nosuchrun")
            run = await conn.execute(["sleep", "30"])
            with pytest.raises(LimitExceededError) as limit:
                await conn.execute(["echo", "two"])
            assert limit.value.limit == "max_runs_per_connection"
            await run.cancel()
            with pytest.raises(InvalidStateError):
                await run.pause()
            with pytest.raises(InvalidParamsError):
                await conn.call("execute", {"argv": "not an array"})
            with pytest.raises(ValueError, match="must not be empty"):
                await conn.execute([])


async def test_spawn_failed(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            with pytest.raises(SpawnFailedError, match="no-such-program"):
                await conn.execute(["no-such-program-ccx"])


async def test_daemon_unavailable() -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(DaemonUnavailable) as info:
        async with open_connection(unused_url()):
            pass
    assert "refused" in info.value.reason


async def test_token_is_sent_and_ignored_by_a_server_without_auth(served: Served) -> None:
    config = ClientConfig(token_in_query=True)
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url, token="secret", config=config) as conn:
            assert (await (await conn.execute(["echo", "x"])).wait()).exit_code == 0


async def test_connection_loss_ends_non_durable_streams() -> None:
    async with trio.open_nursery() as inner:
        served = await start_daemon(inner, make_config())
        with trio.fail_after(TIMEOUT):
            async with open_connection(served.url) as conn:
                run = await conn.execute(["sleep", "30"])
                inner.cancel_scope.cancel()  # the daemon goes away
                with pytest.raises(ConnectionLost):
                    await run.wait()


# -- durable runs, attach, reconnect -------------------------------------------------------


async def durable_capable(url: str) -> bool:
    async with open_connection(url) as conn:
        return conn.supports_durable


@pytest.fixture
async def durable_served(nursery: trio.Nursery, tmp_path: os.PathLike[str]) -> Served:
    try:
        served = await start_daemon(nursery, make_config(state_dir=str(tmp_path)))
    except TypeError:  # a daemon without durable runs has no state_dir
        served = await start_daemon(nursery, make_config())
    if not await durable_capable(served.url):
        pytest.skip("the daemon does not announce the 'durable' and 'attach' capabilities")
    return served


async def test_durable_run_attached_from_another_connection(durable_served: Served) -> None:
    url = durable_served.url
    with trio.fail_after(TIMEOUT):
        async with open_connection(url) as first:
            run = await first.execute(["sh", "-c", "seq 1 5; sleep 0.3; seq 6 9"], durable=True)
            head = []
            async for event in run:
                head.append(event)
                if isinstance(event, Output) and b"5\n" in event.data:
                    break
            await run.detach()
        async with open_connection(url) as second:
            assert run.id in {s.run for s in await second.list()}
            again = await second.attach(run.id, from_seq=0)
            replay = [event async for event in again]
            assert collect(replay, "stdout") == b"".join(b"%d\n" % i for i in range(1, 10))
            assert_contiguous(replay)
            later = await second.attach(run.id, from_seq=head[-1].seq)
            tail = [event async for event in later]
            assert tail[0].seq == head[-1].seq + 1
            assert collect(tail, "stdout") == b"".join(b"%d\n" % i for i in range(6, 10))


async def test_attach_from_the_last_seq_of_a_completed_run_ends_at_once(
    durable_served: Served,
) -> None:
    """Nothing follows such an attach (the caller has the completion): the Run ends with the
    completion `status` reports, instead of waiting for an event that never comes."""
    with trio.fail_after(TIMEOUT):
        async with open_connection(durable_served.url) as first:
            run = await first.execute(["sh", "-c", "echo one; exit 3"], durable=True)
            completed = await run.wait()
        async with open_connection(durable_served.url) as second:
            again = await second.attach(run.id, from_seq=completed.seq)
            assert [event async for event in again] == []
            held = await again.wait()
            assert (held.seq, held.status, held.outcome, held.exit_code) == (
                completed.seq,
                completed.status,
                completed.outcome,
                completed.exit_code,
            )
            assert again.last_seq == completed.seq
            also = await second.attach(run.id, from_seq=completed.seq)
            assert (await also.wait()).exit_code == 3


# 3000 lines, each its own write a moment apart: many events, some during every attach
WRITES_ONE_BY_ONE = (
    "import os, time\nfor i in range(3000):\n    os.write(1, b'%d\\n' % i)\n    time.sleep(0.0005)"
)


async def test_a_refused_attach_loses_no_event_of_the_run_followed(durable_served: Served) -> None:
    """An attach on a connection that follows the run already is refused (-32005); the events
    that arrive while it waits for that reply still belong to the stream being iterated."""
    events: list[RunEvent] = []
    refused = 0
    with trio.fail_after(TIMEOUT):
        async with open_connection(durable_served.url) as conn:
            run = await conn.execute([sys.executable, "-c", WRITES_ONE_BY_ONE], durable=True)

            async def attach_again() -> None:  # another task: the iterating one keeps reading
                nonlocal refused
                while refused < 20 and run.completed is None:
                    with pytest.raises(InvalidStateError):
                        await conn.attach(run.id, run.last_seq)
                    refused += 1
                    await trio.sleep(0.005)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(attach_again)
                events.extend([event async for event in run])
    assert refused > 0
    assert_contiguous(events)
    assert collect(events, "stdout") == b"".join(b"%d\n" % i for i in range(3000))


async def test_an_attach_whose_journal_cannot_be_read_ends_with_an_error(
    durable_served: Served, tmp_path: os.PathLike[str]
) -> None:
    """The daemon follows no further after a `process.journal_error` saying it cannot read the
    journal (here: a FIFO put in its place); the Run raises instead of waiting forever."""
    with trio.fail_after(TIMEOUT * 2):
        async with open_connection(durable_served.url) as conn:
            run = await conn.execute(["seq", "1", "10"], durable=True)
            await run.wait()
            journal = os.path.join(tmp_path, "journals", f"{run.id}.journal")
            os.remove(journal)
            os.mkfifo(journal)
        async with open_connection(durable_served.url) as conn:
            again = await conn.attach(run.id, 0)
            seen: list[RunEvent] = []

            async def iterate() -> None:
                async for event in again:
                    seen.append(event)

            with pytest.raises(ConnectionLost, match="could not read its journal"):
                await iterate()
            with pytest.raises(ConnectionLost):
                await again.wait()
    assert [type(event) for event in seen] == [JournalError]


async def test_durable_run_survives_a_dropped_connection(durable_served: Served) -> None:
    """The client reconnects by itself and the caller sees one unbroken stream."""
    with trio.fail_after(TIMEOUT * 2):
        async with open_connection(durable_served.url) as conn:
            run = await conn.execute(
                ["sh", "-c", "for i in $(seq 1 40); do echo $i; sleep 0.02; done"], durable=True
            )
            events = []
            async for event in run:
                events.append(event)
                if len(events) == 3:
                    ws = conn._ws
                    assert ws is not None
                    await ws._stream.aclose()  # cut the TCP connection under the reader
            assert conn.reconnects >= 1
    assert_contiguous(events)
    assert collect(events, "stdout") == b"".join(b"%d\n" % i for i in range(1, 41))


async def test_a_request_over_the_daemons_message_bound_is_refused_before_it_is_sent(
    nursery: trio.Nursery,
) -> None:
    # It was sent: the daemon closed the whole connection (1009, message too big), and a
    # session of it ended with "lost the connection" (ccx claude, a long line pasted).
    served = await start_daemon(nursery, make_config(max_message_bytes=64 * 1024))
    with trio.fail_after(30):
        async with open_connection(served.url) as conn:
            run = await conn.execute(["cat"], stdin=True)
            with pytest.raises(LimitExceededError) as refused:
                await conn.call("stdin", {"run": run.id, "data": "é" * 40_000})  # 80 kB
            assert refused.value.limit == "max_message_bytes"
            assert "nothing was sent" in refused.value.message
            await run.write_stdin("still here\n", eof=True)  # the connection goes on
            async for event in run:
                if isinstance(event, Completed):
                    break
    assert run.completed is not None
    assert run.completed.exit_code == 0


async def test_ping_is_answered_only_by_a_daemon_that_runs() -> None:
    # A SIGSTOPped daemon: its kernel keeps the connection, so nothing fails — only a ping
    # left unanswered tells.  Then SIGKILL: the socket goes under the ping.
    async with run_daemon() as daemon, open_connection(daemon.url) as conn:
        with trio.fail_after(10):
            await conn.ping()
        os.kill(daemon.process.pid, signal.SIGSTOP)
        try:
            await wait_until(lambda: all_stopped(daemon.process.pid))
            with trio.move_on_after(1.5) as waited:
                await conn.ping()
            assert waited.cancelled_caught
        finally:
            os.kill(daemon.process.pid, signal.SIGCONT)
        with trio.fail_after(10):
            await conn.ping()  # answered once it runs again
            os.kill(daemon.process.pid, signal.SIGSTOP)

            async def kill_soon() -> None:
                await trio.sleep(0.5)  # the ping is in flight first
                daemon.process.kill()  # SIGKILL ends a stopped process too

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_soon)
                with pytest.raises(ConnectionLost):
                    await conn.ping()
        with pytest.raises(ConnectionLost):
            await conn.ping()  # no socket now
