"""Claude Code inside the container, as the product promises: the image carries the real CLI
(from the npm package the other tests install, copied into the build context, no network
during the build), and the daemon in the container runs it against the tests' fake Messages
API on the host.  The image carries procps as well: the CLI ends its Bash tool's processes on
an interrupt by listing them with ``ps`` (without it a CANCEL falls through to SIGTERM).

The container has its own network namespace (slirp4netns) with ``allow_host_loopback``: the
fake API listens on the host's 127.0.0.1 as everywhere in the tests, and the container reaches
it as 10.0.2.2; the daemon's port is published on the host's 127.0.0.1 only.  Nothing listens
beyond loopback.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from ccx_testing import WireClient, open_client, wait_until
from claude_fake_api import PLAIN_TEXT, FakeApi, serve_fake_api
from claude_testing import OFFLINE_ENV
from claude_world import start, typed
from container_testing import Image, apodman, container_processes, free_port, healthz, remove

TOKEN = "container-claude-token"
KEY_VAR = "CCX_TEST_FAKE_ANTHROPIC_KEY"
HOST_LOOPBACK = "10.0.2.2"  # the host's 127.0.0.1 as slirp4netns shows it to the container
BOUND = 120.0
# What a replaced container keeps: the daemon's journals, the CLI's sessions.
VOLUMES = {"state": "/var/lib/cc-executor", "claude": "/home/ccx/.claude"}


@asynccontextmanager
async def claude_container(
    image: Image, api: FakeApi, *options: str, name: str = "ccx-claude-test"
) -> AsyncIterator[tuple[str, str]]:
    """The daemon in a container, set up for Claude runs against `api`: (name, client url).
    `options` go to `podman run` (volumes, more settings)."""
    if image.no_claude:
        pytest.skip(image.no_claude)
    name = f"{name}-{os.getpid()}"
    port = free_port()
    claude_env = ",".join(f"{k}={v}" for k, v in OFFLINE_ENV.items())
    await apodman(
        image.env,
        "run",
        "-d",
        "--name",
        name,
        "--network=slirp4netns:allow_host_loopback=true",
        "-p",
        f"127.0.0.1:{port}:8003",
        "-e",
        f"CCX_TOKENS=tester:{TOKEN}",
        "-e",
        f"CCX_CLAUDE_BASE_URL=http://{HOST_LOOPBACK}:{api.port}",
        "-e",
        f"CCX_CLAUDE_API_KEY_ENV={KEY_VAR}",
        "-e",
        f"{KEY_VAR}=dummy",
        "-e",
        f"CCX_CLAUDE_ENV={claude_env}",
        "-e",
        "CCX_TERM_GRACE=2",
        "-e",
        "CCX_SHUTDOWN_GRACE=1",
        *options,
        image.tag,
    )
    try:
        await wait_until(lambda: healthz(port) == 200, bound=60, interval=0.2)
        yield name, f"ws://127.0.0.1:{port}/?token={TOKEN}"
    finally:
        await remove(image.env, name)


async def only_the_daemon_left(image: Image, name: str) -> list[str]:
    """Wait until PID 1 (the daemon) is the container's only process; return what is left."""
    left: list[str] = []

    def alone() -> bool:
        nonlocal left
        left = container_processes(image.env, name)
        return len(left) == 1

    await wait_until(alone, bound=20, interval=0.2)
    return left


async def test_one_shot_claude_run_in_the_container(image: Image) -> None:
    with serve_fake_api() as api, trio.fail_after(BOUND):
        async with (
            claude_container(image, api) as (name, url),
            open_client(url) as client,
        ):
            run = await start(
                client,
                prompt="run [tool:id -un | tee /home/ccx/ran-here]",
                allowed_tools=["Bash"],
            )
            record = await client.wait_completed(run)
            completed = record.completed
            assert completed is not None
            assert completed["status"] == "completed", completed
            assert completed["exit_code"] == 0
            claude = completed["claude"]
            assert (claude["subtype"], claude["is_error"]) == ("success", False)
            assert claude["num_turns"] == 2  # the tool call, then the answer
            events = typed(client, run)
            assert events[0]["type"] == "init"
            assert [e["text"] for e in events if e["type"] == "text"][-1] == (
                "The tool said: ccx"
            ), "the Bash tool ran in the container, as the image's unprivileged user"
            assert api.requests, "the CLI in the container reached the fake API on the host"
            effect = await apodman(image.env, "exec", name, "cat", "/home/ccx/ran-here")
            assert effect == "ccx\n"
            left = await only_the_daemon_left(image, name)
            assert "ccx serve" in left[0], left


async def test_cancel_mid_tool_leaves_no_process_in_the_container(image: Image) -> None:
    with serve_fake_api() as api, trio.fail_after(BOUND):
        async with (
            claude_container(image, api) as (name, url),
            open_client(url) as client,
        ):
            # The CLI runs each Bash tool call in a session of its own, outside its process
            # group: the sleep is what an orphan would be.
            run = await start(client, prompt="[tool:sleep 300 & wait]", allowed_tools=["Bash"])
            await wait_until(
                lambda: any(
                    line.endswith("sleep 300") for line in container_processes(image.env, name)
                ),
                bound=60,
                interval=0.2,
            )
            reply = await client.call("control", type="CANCEL", run=run)
            record = await client.wait_completed(run)
            assert reply["status"] == "canceled"
            assert reply["rung"] == "sigint"
            completed = record.completed
            assert completed is not None
            assert (completed["status"], completed["outcome"]) == ("canceled", "cancelled")
            left = await only_the_daemon_left(image, name)
            assert "ccx serve" in left[0], left


async def next_note(
    client: WireClient, method: str, run: str, where: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Receive until a `method` notification of the run matches `where`; return its params."""
    while True:
        for note in client.notifications:
            if note["method"] == method and note["params"]["run"] == run and where(note["params"]):
                return dict(note["params"])
        await client.receive()


async def turn_ended(client: WireClient, run: str, turn: int) -> dict[str, Any]:
    return await next_note(client, "claude.turn_ended", run, lambda p: p["turn"] == turn)


async def test_a_claude_session_in_the_container(image: Image) -> None:
    """Turns, a permission request answered from the host, CANCEL mid-tool, no orphan."""
    approved = "/home/ccx/approved"
    with serve_fake_api() as api, trio.fail_after(BOUND):
        async with (
            claude_container(image, api) as (name, url),
            open_client(url) as client,
        ):
            started = await client.call("claude", session=True)
            assert started["session"] is True
            run = started["run"]
            # Turn 1: a plain answer.
            first = await client.call("claude.send", run=run, content="say hi")
            assert first["disposition"] == "started"
            ended = await turn_ended(client, run, first["turn"])
            assert ended["result"]["result"] == PLAIN_TEXT
            assert ended["result"]["cost_usd"] > 0
            # Turn 2: the CLI asks before its Bash tool runs; the host allows it.
            command = f"id -un | tee {approved}"
            second = await client.call("claude.send", run=run, content=f"[tool:{command}]")
            assert second["turn"] == first["turn"] + 1
            asked = await next_note(client, "claude.permission_request", run, lambda p: True)
            assert asked["tool"] == "Bash"
            assert asked["input"]["command"] == command
            await next_note(client, "claude.state", run, lambda p: p["state"] == "requires_action")
            nothing_yet = f"test -e {approved} && echo ran || echo not yet"
            assert (await apodman(image.env, "exec", name, "sh", "-c", nothing_yet)) == (
                "not yet\n"
            ), "the tool waits for the answer"
            answer = await client.call(
                "claude.permission", run=run, request=asked["request"], behavior="allow"
            )
            assert answer == {"decided": True}
            ended = await turn_ended(client, run, second["turn"])
            assert ended["result"]["result"] == "The tool said: ccx"
            assert ended["result"]["is_error"] is False
            decided = await next_note(
                client,
                "claude.permission_decided",
                run,
                lambda p: p["request"] == asked["request"],
            )
            assert decided["behavior"] == "allow"
            assert decided["by"].startswith("client:tester/")
            assert await apodman(image.env, "exec", name, "cat", approved) == "ccx\n"
            status = await client.call("status", run=run)
            assert status["claude"]["turns"] == 2, status
            assert status["claude"]["state"] == "idle", status
            # Turn 3: a tool that would run for minutes, allowed, then CANCEL mid-tool.
            third = await client.call("claude.send", run=run, content="[tool:sleep 300 & wait]")
            assert third["disposition"] == "started"
            asked = await next_note(
                client,
                "claude.permission_request",
                run,
                lambda p: p["input"].get("command") == "sleep 300 & wait",
            )
            await client.call(
                "claude.permission", run=run, request=asked["request"], behavior="allow"
            )
            await wait_until(
                lambda: any(
                    line.endswith("sleep 300") for line in container_processes(image.env, name)
                ),
                bound=60,
                interval=0.2,
            )
            reply = await client.call("control", type="CANCEL", run=run)
            assert reply["status"] == "canceled"
            record = await client.wait_completed(run)
            completed = record.completed
            assert completed is not None
            assert (completed["status"], completed["outcome"]) == ("canceled", "cancelled")
            # SIGINT first: the CLI ended its tool (it lists the processes with the image's
            # ps) and wrote the turn's result itself.
            assert (reply["rung"], completed["rung"]) == ("sigint", "sigint")
            claude = completed["claude"]
            assert (claude["session"], claude["turns"]) == (True, third["turn"])
            assert claude["last_result"]["terminal_reason"] == "aborted_tools"
            left = await only_the_daemon_left(image, name)
            assert "ccx serve" in left[0], left
    assert len(api.requests) >= 4, "every turn reached the fake API on the host"


async def wait_transcript(image: Image, name: str, session_id: str) -> None:
    """Until the CLI in container `name` has written the transcript of `session_id`."""
    find = f"find /home/ccx/.claude/projects -name '{session_id}.jsonl'"
    for _ in range(300):  # 30 s at most
        if (await apodman(image.env, "exec", name, "sh", "-c", find)).strip():
            return
        await trio.sleep(0.1)
    raise AssertionError(f"no transcript of session {session_id} in {name}")


def user_texts(body: dict[str, Any]) -> list[str]:
    """Every user text block of a Messages API request."""
    texts: list[str] = []
    for message in body["messages"]:
        if message["role"] != "user":
            continue
        content = message["content"]
        for block in content if isinstance(content, list) else [content]:
            texts.append(block.get("text", "") if isinstance(block, dict) else str(block))
    return texts


async def test_a_durable_session_outlives_its_container(image: Image) -> None:
    """The container is killed mid-session; a new one on the same volumes (the daemon's state,
    the CLI's ~/.claude) reports the run lost, and claude.resume continues the session."""
    if image.no_claude:
        pytest.skip(image.no_claude)
    volumes = {f"ccx-test-{kind}-{os.getpid()}": path for kind, path in VOLUMES.items()}
    mounts = [arg for volume, path in volumes.items() for arg in ("-v", f"{volume}:{path}")]
    # Durable run ids name their instance; a new container has a new host name.
    options = ("-e", "CCX_INSTANCE=ccx-0", *mounts)
    try:
        with serve_fake_api() as api, trio.fail_after(BOUND * 2):
            async with (
                claude_container(image, api, *options, name="ccx-first") as (name, url),
                open_client(url) as client,
            ):
                started = await client.call(
                    "claude", session=True, durable=True, prompt="remember the word PELICAN"
                )
                run = started["run"]
                await turn_ended(client, run, 1)
                session_id = (await client.call("status", run=run))["claude"]["session_id"]
                await client.call("claude.send", run=run, content="a slow one [slow:300]")
                await next_note(client, "claude.turn_started", run, lambda p: p["turn"] == 2)
                # The CLI writes its transcript some time after a turn's result (seen: none on
                # disk yet when killed within milliseconds of it); without it there is nothing
                # to resume, whatever the daemon does.
                await wait_transcript(image, name, session_id)
                await apodman(image.env, "kill", "--signal", "KILL", name)
            async with (
                claude_container(image, api, *options, name="ccx-second") as (name, url),
                open_client(url) as client,
            ):
                lost = await client.call("status", run=run)
                assert lost["outcome"] == "lost", lost
                seen = len(api.requests)
                resumed = await client.call("claude.resume", session=session_id, prompt="which?")
                assert resumed["session"] is True
                ended = await turn_ended(client, resumed["run"], 1)
                assert ended["result"]["subtype"] == "success"
                assert ended["result"]["session_id"] == session_id
                done = await client.call("claude.close", run=resumed["run"])
                assert (done["outcome"], done["exit_code"]) == ("exited", 0), done
                left = await only_the_daemon_left(image, name)
                assert "ccx serve" in left[0], left
        # The new process sent the earlier conversation with the new message.
        texts = user_texts(api.requests[seen]["body"])
        assert any("remember the word PELICAN" in text for text in texts), texts
        assert any("which?" in text for text in texts), texts
    finally:
        for volume in volumes:
            await trio.run_process(
                ["podman", "volume", "rm", "-f", volume],
                env=image.env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
