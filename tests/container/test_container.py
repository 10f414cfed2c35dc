"""The Containerfile, built and run for real with podman.

The image is built from a wheelhouse with no network.  Podman needs two settings on these
machines (runc instead of crun, and rlimits it may set) — see ``containers.conf`` below — and
no registry is reachable, so the ``FROM`` image is made offline with debootstrap the first
time (about a minute) and kept in podman's storage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import trio
from ccx_testing import open_client, wait_until

ROOT = Path(__file__).resolve().parents[2]
BASE = "docker.io/library/python:3.11-slim"
IMAGE = "localhost/cc-executor:test"
TOKEN = "container-test-token"
IN_CI = os.environ.get("CI") == "true"
PROVISION = "apt-get install -y podman buildah runc debootstrap uidmap"


def podman(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        ["podman", *args], env=env, capture_output=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr.decode()}"
    return result.stdout.decode()


def ensure_tools() -> None:
    if all(shutil.which(tool) for tool in ("podman", "debootstrap")):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"podman is not installed; install it with: {PROVISION}")
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "podman", "buildah", "runc", "debootstrap", "uidmap"],
    ):
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def ensure_base(env: dict[str, str], work: Path) -> None:
    exists = subprocess.run(["podman", "image", "exists", BASE], env=env, check=False)
    if exists.returncode == 0:
        return
    rootfs = work / "rootfs"
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip,ca-certificates",
            "bookworm",
            str(rootfs),
            "http://deb.debian.org/debian",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
    (rootfs / "usr/local/bin/pip").symlink_to("/usr/bin/pip3")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["podman", "import", "-", BASE],
        stdin=tar.stdout,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert tar.wait(timeout=600) == 0


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if sys.platform != "linux":
        pytest.skip("podman containers need Linux")
    ensure_tools()
    work = tmp_path_factory.mktemp("container")
    conf = work / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    ensure_base(env, work)
    context = work / "context"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(context / "wheelhouse"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    shutil.copy(ROOT / "Containerfile", context / "Containerfile")
    podman(
        env,
        "build",
        "--pull=never",
        "--network=none",
        "--format",
        "docker",
        "-t",
        IMAGE,
        str(context),
        timeout=900,
    )
    return env


def container_logs(env: dict[str, str], name: str) -> str:
    result = subprocess.run(
        ["podman", "logs", name], env=env, capture_output=True, timeout=60, check=True
    )
    return (result.stdout + result.stderr).decode()


async def apodman(env: dict[str, str], *args: str) -> str:
    """podman from a worker thread, so the event loop (and our WebSocket) keeps running."""
    return await trio.to_thread.run_sync(podman, env, *args)


PROC_FIELD = (
    "import sys\n"
    "try:\n"
    "    s = open(f'/proc/{sys.argv[1]}/stat').read()\n"
    "except OSError:\n"
    "    sys.exit(0)\n"
    "fields = s[s.rindex(')') + 2 :].split()\n"
    "print({'state': fields[0], 'ppid': fields[1]}[sys.argv[2]])\n"
)


def proc_field(env: dict[str, str], name: str, pid: str, field: str) -> str | None:
    """A process's state or ppid inside the container; None once it is gone (reaped)."""
    out = podman(env, "exec", name, "python", "-c", PROC_FIELD, pid, field).strip()
    return out or None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


async def test_container_serves_runs_and_stops_cleanly(image: dict[str, str]) -> None:
    env = image
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
        IMAGE,
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
        with trio.move_on_after(120, shield=True):
            await trio.run_process(
                ["podman", "rm", "-f", name], env=env, capture_stdout=True, check=False
            )
