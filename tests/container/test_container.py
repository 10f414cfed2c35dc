"""The Containerfile, built and run for real with podman: the daemon as PID 1, unprivileged,
reaping, healthy, and stopping cleanly on SIGTERM.  The image and the podman helpers are in
tests/container_testing.py; Claude Code inside the container is test_container_claude.py."""

from __future__ import annotations

import os

import trio
from ccx_testing import open_client, wait_until
from container_testing import (
    Image,
    apodman,
    container_logs,
    free_port,
    healthz,
    proc_field,
    remove,
)

TOKEN = "container-test-token"


async def test_container_serves_runs_and_stops_cleanly(image: Image) -> None:
    env = image.env
    name = f"ccx-test-{os.getpid()}"
    port = free_port()
    await apodman(
        env,
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:8003",
        "-e",
        f"CCX_TOKENS=tester:{TOKEN}",
        "-e",
        "CCX_TERM_GRACE=2",
        "-e",
        "CCX_SHUTDOWN_GRACE=1",
        image.tag,
    )
    try:
        with trio.fail_after(120):
            await wait_until(lambda: healthz(port) == 200, bound=60, interval=0.2)
            assert (
                await apodman(env, "inspect", "--format", "{{.Config.User}}", name)
            ).strip() == "ccx"
            # The image's HEALTHCHECK passes.
            await apodman(env, "healthcheck", "run", name)
            # PID 1 reaps orphans that are none of its runs: a process started beside the
            # daemon whose parent exits at once is reparented to PID 1 (the daemon); when it
            # exits, its /proc entry must vanish (a zombie would keep it).
            orphan = (await apodman(env, "exec", name, "sh", "-c", "sleep 1 & echo $!")).strip()
            assert proc_field(env, name, orphan, "ppid") == "1"
            await wait_until(
                lambda: proc_field(env, name, orphan, "state") is None, bound=20, interval=0.2
            )
            url = f"ws://127.0.0.1:{port}/?token={TOKEN}"
            async with open_client(url) as client:
                who = await client.execute(argv=["id", "-u"])
                record = await client.wait_completed(who)
                assert bytes(record.stdout) == b"10001\n", "runs as the unprivileged user"
                run = await client.execute(argv=["sh", "-c", "echo started; exec sleep 300"])
                await client.wait_output(run, b"started\n")

                # podman stop sends SIGTERM: the daemon tells us, cancels the run through the
                # ladder, closes, and exits 0 well before podman's SIGKILL deadline.
                async def stop() -> None:
                    await apodman(env, "stop", "--time", "30", name)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(stop)
                    record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["reason"] == "daemon shutdown"
            assert any(n["method"] == "shutdown" for n in client.notifications)
        state = await apodman(
            env, "inspect", "--format", "{{.State.ExitCode}} {{.State.Status}}", name
        )
        assert state.split() == ["0", "exited"]
        # podman replays the container's stderr (where the JSON logs go) on its own stderr.
        logs = await trio.to_thread.run_sync(container_logs, env, name)
        assert '"daemon.stopped"' in logs
        assert TOKEN not in logs, "logs name the identity, never the token"
    finally:
        await remove(env, name)
