"""A slow sink blocks the runner (and the child) instead of losing or buffering output."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.outcome import Exited
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import Recorder, python_argv, run_to_completion

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def test_slow_sink_loses_nothing(registry: RunRegistry, run_id: Callable[[], str]) -> None:
    # Small pipes and chunks make the child block in write() many times over.
    config = SupervisionConfig(read_size=4096, max_chunk=4096, channel_capacity=2, pipe_size=4096)
    total = 4 * 1024 * 1024
    code = (
        "import sys, hashlib\n"
        f"data = bytes(range(256)) * ({total} // 256)\n"
        "for i in range(0, len(data), 1000):\n"
        "    sys.stdout.buffer.write(data[i:i + 1000])\n"
        "    sys.stderr.buffer.write(b'%d\\n' % i)\n"
    )
    recorder = Recorder(delay=0.0005)
    with trio.fail_after(120):
        outcome = await run_to_completion(
            SpawnSpec(python_argv(code), ENV, run_id()), config, registry, recorder
        )
    assert outcome == Exited(0)
    expected = bytes(range(256)) * (total // 256)
    assert hashlib.sha256(recorder.output("stdout")).digest() == hashlib.sha256(expected).digest()
    expected_err = b"".join(b"%d\n" % i for i in range(0, total, 1000))
    assert recorder.output("stderr") == expected_err
    completed = recorder.completed
    assert completed is not None
    assert (completed.stdout_bytes, completed.stderr_bytes) == (total, len(expected_err))
