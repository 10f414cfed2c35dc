"""Spawning and exact output through runner + pump, with real processes."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable

import pytest
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import SpawnError
from cc_executor.supervision.events import CompletedEvent, Output, RunEvent
from cc_executor.supervision.marker import RUN_ID_VAR
from cc_executor.supervision.outcome import Exited, Signalled
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.runner import run_process
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import Recorder, python_argv, run_to_completion, start_run

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def test_stdout_and_stderr_apart_with_unterminated_last_line(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    code = "import sys; print('out 1'); print('err 1', file=sys.stderr); sys.stdout.write('tail')"
    recorder = Recorder()
    with trio.fail_after(20):
        outcome = await run_to_completion(
            SpawnSpec(python_argv(code), ENV, run_id()), config, registry, recorder
        )
    assert outcome == Exited(0)
    assert recorder.output("stdout") == b"out 1\ntail"
    assert recorder.output("stderr") == b"err 1\n"
    completed = recorder.completed
    assert completed is not None
    assert (completed.stdout_bytes, completed.stderr_bytes) == (10, 6)
    assert [e.seq for e in recorder.events] == list(range(1, len(recorder.events) + 1))


async def test_exit_code_and_signal(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    with trio.fail_after(20):
        exited = await run_to_completion(
            SpawnSpec(("sh", "-c", "exit 3"), ENV, run_id()), config, registry, Recorder()
        )
        killed = await run_to_completion(
            SpawnSpec(("sh", "-c", "kill -9 $$"), ENV, run_id()), config, registry, Recorder()
        )
    assert exited == Exited(3)
    assert killed == Signalled(9)


async def test_twenty_megabyte_line_without_newline_arrives_intact(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    size = 20 * 1024 * 1024
    code = f"import sys; sys.stdout.buffer.write(b'x' * {size})"
    recorder = Recorder()
    with trio.fail_after(60):
        outcome = await run_to_completion(
            SpawnSpec(python_argv(code), ENV, run_id()), config, registry, recorder
        )
    assert outcome == Exited(0)
    data = recorder.output("stdout")
    assert len(data) == size
    assert data == b"x" * size
    assert all(len(e.data) <= config.max_chunk for e in recorder.events if isinstance(e, Output))


async def test_random_non_utf8_bytes_are_exact(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    payload = random.Random(1234).randbytes(3 * 1024 * 1024 + 17)
    code = (
        "import sys, random; "
        "sys.stdout.buffer.write(random.Random(1234).randbytes(3 * 1024 * 1024 + 17))"
    )
    recorder = Recorder()
    with trio.fail_after(60):
        await run_to_completion(
            SpawnSpec(python_argv(code), ENV, run_id()), config, registry, recorder
        )
    assert hashlib.sha256(recorder.output("stdout")).digest() == hashlib.sha256(payload).digest()


async def test_new_session_and_run_marker(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    rid = run_id()
    code = (
        "import os; "
        f"print(os.getpid(), os.getpgrp(), os.getsid(0), os.environ['{RUN_ID_VAR}'], "
        "os.environ.get('HOME', '-'))"
    )
    recorder = Recorder()
    with trio.fail_after(20):
        await run_to_completion(SpawnSpec(python_argv(code), ENV, rid), config, registry, recorder)
    pid, pgid, sid, marker, home = recorder.output().split()
    assert pid == pgid == sid
    assert marker.decode() == rid
    assert home == b"-"  # the child gets exactly the given environment (plus the marker)


async def test_stdin_pipe(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    code = "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1])"
    recorder = Recorder()
    spec = SpawnSpec(python_argv(code), ENV, run_id(), stdin="pipe")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            run = await start_run(nursery, spec, config, registry, recorder)
            open_before = run.stdin_open
            await run.write_stdin(b"abc")
            await run.write_stdin(b"def")
            await run.close_stdin()
            assert (open_before, run.stdin_open) == (True, False)
    assert recorder.output() == b"fedcba"


@pytest.mark.parametrize(
    ("argv", "cwd", "message"),
    [
        (("no-such-command-ccx",), None, "command not found: no-such-command-ccx"),
        (("/etc/passwd",), None, "permission denied: /etc/passwd"),
        (("true", "x" * (200 * 1024)), None, "argument list too long"),
        (("true",), "/no/such/dir", "cwd does not exist: /no/such/dir"),
        ((), None, "empty command"),
    ],
)
async def test_spawn_errors(
    config: SupervisionConfig,
    registry: RunRegistry,
    run_id: Callable[[], str],
    argv: tuple[str, ...],
    cwd: str | None,
    message: str,
) -> None:
    send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            with pytest.raises(SpawnError) as info:
                await nursery.start(
                    run_process, SpawnSpec(argv, ENV, run_id(), cwd=cwd), config, send, registry
                )
    assert info.value.message == message
    assert len(registry) == 0
    with pytest.raises(trio.EndOfChannel):
        receive.receive_nowait()  # the runner closed its channel


async def test_completed_is_the_last_event(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = Recorder()
    code = "import sys\nfor i in range(2000): print(i); print(i, file=sys.stderr)"
    with trio.fail_after(20):
        await run_to_completion(
            SpawnSpec(python_argv(code), ENV, run_id()), config, registry, recorder
        )
    assert isinstance(recorder.events[-1], CompletedEvent)
    assert sum(isinstance(e, CompletedEvent) for e in recorder.events) == 1
    expected = "".join(f"{i}\n" for i in range(2000)).encode()
    assert recorder.output("stdout") == expected
    assert recorder.output("stderr") == expected
