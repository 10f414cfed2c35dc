"""What the daemon reads from its state directory at start, damaged: never a crash at start.

The state directory holds only ``journals/`` (``<run>.journal``, with ``.reserve``,
``.damaged-*``, ``.creating`` and ``.compact`` files beside them); claims and every other
table are in memory.  Observed on main: a record whose CRC holds but whose payload is short
ended recovery there (struct.error): that run and every journal read after it vanished.  A
``journals`` that is not a directory is logged and the daemon serves (main had fixed it just
before: kept as a test).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio
from ccx_testing import run_daemon
from durable_testing import open_durable_client
from faults_journal_testing import fill, small_tmpfs

from cc_executor.supervision.events import Output
from cc_executor.supervision.journal import Journal, JournalConfig, Meta, boot_id
from cc_executor.supervision.journal_codec import K_COMPLETED, encode_entry, seed_of
from cc_executor.supervision.journal_codec import _record as record


async def test_journals_that_is_not_a_directory_is_logged_and_the_daemon_serves(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "journals").write_bytes(b"not a directory")
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            await daemon.wait_logged("durable.state_unreadable")
            # In words, with what it means (it was "[Errno 20] Not a directory: '...'").
            (logged,) = [line for line in daemon.stderr_lines if "state_unreadable" in line]
            assert orjson.loads(logged)["error"] == (
                "it cannot be listed (Not a directory): durable runs cannot start"
            )
            run = await client.execute(argv=["echo", "hi"])
            assert (await client.wait_completed(run)).stdout == bytearray(b"hi\n")
            error = await client.call_error("execute", argv=["echo", "hi"], durable=True)
            assert error.code == -32006
            assert "cannot create the run's journal" in error.message
            assert (await client.call("list"))["runs"][0]["run"] == run


async def test_a_state_directory_that_is_a_link_to_nothing_is_logged_at_start(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.symlink_to(tmp_path / "nowhere")
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            await daemon.wait_logged("durable.state_unreadable")
            assert any("symbolic link to nothing" in line for line in daemon.stderr_lines)
            run = await client.execute(argv=["echo", "hi"])  # runs that need no journal go on
            assert (await client.wait_completed(run)).stdout == bytearray(b"hi\n")


async def test_a_state_directory_that_cannot_be_made_is_logged_at_start(tmp_path: Path) -> None:
    # A read-only file system (a real ro tmpfs): journals/ cannot be made.  It was heard of
    # only at the first durable run's -32006; the start said nothing.
    with small_tmpfs(tmp_path / "ro", "1m") as disk, trio.fail_after(60):
        await trio.run_process(["mount", "-o", "remount,ro", str(disk)])
        async with (
            run_daemon("--state-dir", str(disk / "state")) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            await daemon.wait_logged("durable.state_unreadable")
            logged = [line for line in daemon.stderr_lines if "state_unreadable" in line]
            assert "cannot be created (Read-only file system)" in logged[0], logged
            run = await client.execute(argv=["echo", "hi"])  # runs without a journal go on
            assert (await client.wait_completed(run)).stdout == bytearray(b"hi\n")
            error = await client.call_error("execute", argv=["echo", "hi"], durable=True)
            assert error.code == -32006


async def test_a_whole_record_with_a_short_payload_is_damage_not_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "journals").mkdir(parents=True)
    path = state / "journals" / "short-1.journal"
    meta = Meta("short-1", 1, 1, ("true",), time.time(), boot_id(), 1 << 20, "block", "local")
    journal = Journal.create(str(path), meta, JournalConfig(fsync="never", batch_bytes=0))
    await journal.deliver(Output(seq=1, stream="stdout", data=b"kept\n"))
    await journal.close()
    with path.open("ab") as f:  # its CRC holds; its fields do not decode (struct.error)
        seed = seed_of("short-1")  # its journal's: valid records of this run
        f.write(record(K_COMPLETED, 2, b"\x05\x00", seed))
        f.write(encode_entry(Output(seq=3, stream="stdout", data=b"after\n"), seed))
    meta = attrs.evolve(meta, run_id="zz-after")
    after = Journal.create(str(state / "journals" / "zz-after.journal"), meta, JournalConfig())
    await after.close()  # read after the damaged one: recovery goes on past it
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run="short-1")
            assert [(d["first_seq"], d["last_seq"]) for d in status["journal"]["damaged"]] == [
                (2, 2)
            ]
            await client.attach("short-1", 0)
            replayed = await client.wait_completed("short-1")
            assert replayed.stdout == bytearray(b"kept\nafter\n")
            assert [gap["seq"] for gap in client.gaps] == [2]
            assert "zz-after" in {run["run"] for run in (await client.call("list"))["runs"]}


async def test_recovery_on_a_full_disk_completes_lost_runs_in_memory_and_never_waits(
    tmp_path: Path,
) -> None:
    # A run that died with its daemon before its completion reserve was made (here: before
    # its head reached the disk): nothing frees room for its lost completion.  On main the
    # recovery retried that write for as long as the disk stayed full, and every `list` and
    # `status` waited for the recovery.
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(60):
        journals = disk / "state" / "journals"
        journals.mkdir(parents=True)
        (journals / "lost-1.journal").write_bytes(b"")
        fill(disk)
        async with (
            run_daemon("--state-dir", str(disk / "state")) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            status = await client.call("status", run="lost-1")
            assert (status["state"], status["outcome"]) == ("completed", "lost")
            assert "No space left on device" in status["journal"]["error"]["reason"]
            assert listed(await client.call("list"), "lost-1")
            await client.attach("lost-1", 0)
            assert (await client.wait_completed("lost-1")).completed is not None


def listed(result: dict[str, Any], run: str) -> bool:
    return any(entry["run"] == run for entry in result["runs"])
