"""A durable Claude session's journal damaged on disk, then a daemon restart (SIGKILL, a new
daemon on the same state directory), a client attaching from seq 0 and resuming the session.

One journal is made (a turn with a permission request answered, a second turn running when
the daemon is killed) and damaged a copy at a time, at each kind of record a session writes:
its notes (turn started and ended, permission request and decision, state), the stream-json
of its CLI (init, control request) — a flipped byte, and a file cut in the middle of a record.

Observed on main: a file cut mid-record (a torn tail) was reported nowhere — not in ``status``,
not to the client, whose replay went from the last whole record to the lost completion,
reusing the cut records' seqs; a session whose journal had no whole ``claude.turn_ended`` (it
was damaged, or cut, or the daemon died in the first turn) had no ``session_id`` to
``claude.resume`` it with; one cut before its first ``claude.state`` was not a session at all.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import trio
from ccx_testing import run_daemon, wait_until
from claude_world import BOUND, ClaudeWorld, daemon_env, reap_zombies, wait_notice
from durable_testing import DurableClient, open_durable_client
from faults_journal_testing import flip_byte, journal_reader

from cc_executor.supervision.events import Note
from cc_executor.supervision.journal_codec import K_META, MAGIC, Record, decode_entry
from cc_executor.supervision.journal_reader import read_record
from cc_executor.supervision.testing import marked_processes


def records(path: Path) -> list[tuple[Record, str]]:
    """Every record after META, with what it is: a note's name, or the stdout line's type."""
    found = []
    with path.open("rb") as f:
        offset = len(MAGIC)
        reader = journal_reader(path, f.fileno())
        while isinstance(record := read_record(reader, offset, path.stat().st_size), Record):
            if record.kind != K_META:
                found.append((record, what(record)))
            offset = record.end
    return found


def what(record: Record) -> str:
    entry = decode_entry(record)
    if isinstance(entry, Note):
        return entry.name
    for kind in ('"subtype":"init"', '"type":"control_request"', '"type":"result"'):
        if kind.encode() in bytes(record.payload):
            return kind
    return "other"


def find(found: list[tuple[Record, str]], text: str) -> Record:
    return next(record for record, name in found if text in name)


async def make_journal(world: ClaudeWorld, state: Path) -> tuple[str, str, list[dict[str, Any]]]:
    """A durable session killed with the daemon mid-turn: its run, Claude session id, events."""
    target = world.work / "made"
    async with (
        run_daemon("--state-dir", str(state), env=daemon_env(world)) as daemon,
        open_durable_client(daemon.url) as client,
    ):
        reply = await client.call(
            "claude", session=True, durable=True, prompt=f"[tool:touch {target}]",
            cwd=str(world.work),
        )  # fmt: skip
        run = reply["run"]
        asked = await wait_notice(client, run, "claude.permission_request")
        await client.call("claude.permission", run=run, request=asked["request"], behavior="allow")
        ended = await wait_notice(client, run, "claude.turn_ended", turn=1)
        await client.call("claude.send", run=run, content="a slow one [slow:300]")
        await wait_notice(client, run, "claude.turn_started", turn=2)
        await wait_until(lambda: len(world.api.requests) >= 3, bound=BOUND)
        await wait_notice(client, run, "claude.state", state="running", count=3)
        daemon.process.send_signal(signal.SIGKILL)
        await daemon.process.wait()
    await wait_until(lambda: not marked_processes(run), bound=BOUND)  # the new daemon kills it
    return run, ended["result"]["session_id"], list(client.runs[run].events)


async def replay(client: DurableClient, run: str) -> list[dict[str, Any]]:
    await client.attach(run, 0)
    await client.wait_completed(run)
    return list(client.runs[run].events)


async def test_damage_at_each_kind_of_session_record_is_reported_and_the_rest_replayed(
    world: ClaudeWorld, tmp_path: Path
) -> None:
    state, pristine = tmp_path / "state", tmp_path / "pristine"
    with trio.fail_after(BOUND * 6):
        async with run_daemon("--state-dir", str(tmp_path / "other"), env=daemon_env(world)):
            pass  # (a daemon's first start compiles; the SIGKILL below should not race it)
        run, session_id, live = await make_journal(world, state)
        reap_zombies()
        shutil.copytree(state, pristine)
        async with (  # the undamaged replay: what every damaged one is compared with
            run_daemon("--state-dir", str(state), env=daemon_env(world)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            before = (await replay(client, run))[:-1]
            assert not client.gaps
        assert before[: len(live)] == live  # what the client saw live, and what came after
        path = next((state / "journals").glob("*.journal"))
        found = records(path)
        flips = [
            find(found, name)
            for name in (
                "claude.turn_started", "claude.state", '"subtype":"init"',
                '"type":"control_request"', "claude.permission_request",
                "claude.permission_decided", "claude.turn_ended",
            )
        ]  # fmt: skip
        cuts = [find(found, "claude.turn_ended"), find(found, "claude.state"), found[-1][0]]
        cases = [("flip", r) for r in flips] + [("cut", r) for r in cuts]
        for how, record in cases:
            shutil.rmtree(state)  # (the undamaged run above completed it: start again)
            shutil.copytree(pristine, state)
            if how == "flip":
                flip_byte(path, record.offset + 14)  # its head: the CRC fails
            else:
                os.truncate(path, record.offset + (record.end - record.offset) // 2)
            async with (
                run_daemon("--state-dir", str(state), env=daemon_env(world)) as daemon,
                open_durable_client(daemon.url) as client,
            ):
                status = await client.call("status", run=run)
                events = await replay(client, run)
                resumed = None
                if how == "cut" and record is cuts[0]:  # no whole turn's end: resume anyway
                    resumed = await resume(client, world, status["claude"]["session_id"])
                assert daemon.process.returncode is None
                assert not [line for line in daemon.stderr_lines if "Traceback" in line]
            check(how, record, status, events, before, client.gaps, session_id)
            if resumed is not None:
                assert resumed["result"]["subtype"] == "success"
                assert resumed["result"]["session_id"] == session_id


async def resume(client: DurableClient, world: ClaudeWorld, session_id: str) -> dict[str, Any]:
    reply = await client.call(
        "claude.resume", session=session_id, prompt="again", cwd=str(world.work)
    )
    ended = await wait_notice(client, reply["run"], "claude.turn_ended")
    await client.call("claude.close", run=reply["run"])
    await client.wait_completed(reply["run"])
    return ended


def check(
    how: str,
    record: Record,
    status: dict[str, Any],
    events: list[dict[str, Any]],
    before: list[dict[str, Any]],
    gaps: list[dict[str, Any]],
    session_id: str,
) -> None:
    seq = record.seq
    case = (how, seq, status["journal"], gaps)
    assert status["outcome"] == "lost", case
    claude = status["claude"]
    assert claude["session"] is True, case
    assert claude["recovered"] is True, case
    # The Claude session's id, unless nothing before the damage said it (the init came later).
    init_seq = next(e["seq"] for e in before if '"subtype":"init"' in e.get("data", ""))
    known = how == "flip" or seq > init_seq
    assert claude["session_id"] == (session_id if known else None), case
    assert events[-1]["method"] == "process.completed", case
    replayed = events[:-1]
    if how == "flip":
        assert [(d["first_seq"], d["last_seq"]) for d in status["journal"]["damaged"]] == [
            (seq, seq if seq < before[-1]["seq"] else None)
        ], case
        assert [(g["seq"], g["reason"]) for g in gaps] == [(seq, "journal damaged")], case
        assert replayed == [e for e in before if e["seq"] != seq], case
    else:
        assert status["journal"]["truncated_bytes"] > 0, case
        ((gap),) = gaps
        assert gap["seq"] == seq, case
        assert gap["reason"].startswith("journal damaged"), case
        assert replayed == [e for e in before if e["seq"] < seq], case
        assert events[-1]["seq"] > seq, case  # after the gap: no seq is used twice
