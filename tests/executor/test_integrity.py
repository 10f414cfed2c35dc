"""Every byte arrives exactly once, in order, streams apart — whatever its shape."""

from __future__ import annotations

import hashlib
import os

import trio
from ccx_testing import Served, open_client

BIG = 64 * 1024 * 1024


async def test_seq_two_million_lines_exact(served: Served) -> None:
    with trio.fail_after(120):
        async with open_client(served.url, max_message_size=BIG) as client:
            run = await client.execute(argv=["seq", "1", "2000000"])
            record = await client.wait_completed(run)
    expected = "".join(f"{i}\n" for i in range(1, 2_000_001)).encode()
    assert len(record.stdout) == len(expected)
    assert hashlib.sha256(record.stdout).digest() == hashlib.sha256(expected).digest()
    assert record.completed is not None
    assert record.completed["exit_code"] == 0
    # Lines are kept whole: every output chunk but a size-split one ends with a newline.
    outputs = [e for e in record.events if e["method"] == "process.output"]
    assert all(e["data"].endswith("\n") for e in outputs)
    assert len(outputs) < 2_000_000 // 100, "lines must be batched, not sent one by one"


async def test_final_line_without_newline_and_streams_apart(served: Served) -> None:
    script = "printf 'out1\\nout2'; printf 'err1\\nerr2' >&2"
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sh", "-c", script])
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == b"out1\nout2"
    assert bytes(record.stderr) == b"err1\nerr2"


async def test_twenty_megabyte_line_without_newline(served: Served) -> None:
    code = "import sys; sys.stdout.write('x' * 20_000_000); sys.stdout.flush()"
    with trio.fail_after(60):
        async with open_client(served.url, max_message_size=BIG) as client:
            run = await client.execute(argv=["python3", "-c", code])
            record = await client.wait_completed(run)
    assert len(record.stdout) == 20_000_000
    assert record.stdout.count(b"x") == 20_000_000


async def test_random_bytes_round_trip_exactly(served: Served, tmp_path: os.PathLike[str]) -> None:
    blob = os.urandom(3 * 1024 * 1024) + b"\xff\xfe\n\x00tail"
    path = os.path.join(tmp_path, "blob")
    await trio.Path(path).write_bytes(blob)
    with trio.fail_after(60):
        async with open_client(served.url, max_message_size=BIG) as client:
            run = await client.execute(argv=["cat", path])
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == blob
    encodings = {e.get("encoding") for e in record.events if e["method"] == "process.output"}
    assert "base64" in encodings
