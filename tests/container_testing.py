"""Podman for the container tests: the tools, an offline base image, the image built from the
Containerfile (with the Claude Code CLI the other tests install), and helpers to look inside.

Podman needs two settings on these machines (runc instead of crun, and rlimits it may set) —
see ``containers.conf`` below — and no registry is reachable, so the ``FROM`` image is made
offline with debootstrap the first time (about a minute) and kept in podman's storage.  The
build itself runs with ``--network=none``: the daemon comes from a wheelhouse, the CLI from
the npm package in .cache/claude-code, procps (the CLI needs ``ps``) from .deb files the base
image downloaded once into .cache/container-debs.  Podman's layer cache keeps the CLI's layer
(it sits before the wheel's), so a rebuild after a code change takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import attrs
import pytest
import trio

ROOT = Path(__file__).resolve().parents[1]
BASE = "docker.io/library/python:3.11-slim"
# One tag per checkout: several checkouts on one machine share podman's storage.
IMAGE = f"localhost/cc-executor:test-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]}"
PROVISION = "apt-get install -y podman buildah runc debootstrap uidmap"
CONTAINERS_CONF = (
    '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
    '[engine]\nruntime = "runc"\n'
)


@attrs.frozen
class Image:
    """The built image: podman's environment, its tag, and why it has no CLI (if it has none)."""

    env: dict[str, str]
    tag: str
    no_claude: str | None


def podman(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        ["podman", *args], env=env, capture_output=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr.decode()}"
    return result.stdout.decode()


async def apodman(env: dict[str, str], *args: str) -> str:
    """podman from a worker thread, so the event loop (and our WebSocket) keeps running."""
    return await trio.to_thread.run_sync(podman, env, *args)


async def remove(env: dict[str, str], name: str) -> None:
    with trio.move_on_after(120, shield=True):
        await trio.run_process(
            ["podman", "rm", "-f", name], env=env, capture_stdout=True, check=False
        )


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


# What the Containerfile's header says to run: the base image downloads the Debian packages it
# lacks for the image (procps), so they match its release.  Kept per base image in .cache.
DOWNLOAD_DEBS = (
    "apt-get update -qq && apt-get install -y -qq --download-only --no-install-recommends "
    "-o Dir::Cache::archives=/debs procps && rm -rf /debs/partial /debs/lock"
)


def _debs(env: dict[str, str]) -> Path:
    base_id = podman(env, "image", "inspect", "--format", "{{.Id}}", BASE).strip()
    debs = ROOT / ".cache" / "container-debs" / base_id[:12]
    if (debs / ".complete").exists():
        return debs
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    podman(env, "run", "--rm", "-v", f"{debs}:/debs", BASE, "sh", "-c", DOWNLOAD_DEBS)
    (debs / ".complete").touch()
    return debs


def _source_copy(target: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) copied to `target`: setuptools
    builds in the tree, and a build/lib left there would put deleted modules in the wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if listed.returncode != 0:
        return ROOT  # not a git checkout: build from the tree as it is
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # the CLI is ~245 MB: no copy when on the same file system
    except OSError:
        shutil.copy2(source, target)


def _claude_package() -> tuple[Path | None, str | None]:
    """The installed npm package of the CLI (installing it if needed), or why there is none."""
    from claude_testing import claude_cli  # skips (or fails in CI) when it cannot be had

    try:
        binary = claude_cli()
    except pytest.skip.Exception as skipped:
        return None, str(skipped)
    return binary.resolve().parents[1], None  # node_modules/@anthropic-ai/claude-code


def build_image(work: Path) -> Image:
    """Make sure of podman and the base, then build the Containerfile as a newcomer would."""
    if sys.platform != "linux":
        pytest.skip("podman containers need Linux")
    ensure_tools()
    conf = work / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
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
            str(_source_copy(work / "source")),
        ],
        check=True,
        capture_output=True,
        timeout=600,
        # Fixed zip timestamps: the same sources make the same wheel, and podman's cache
        # then keeps the wheel's layer too.
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )
    shutil.copytree(_debs(env), context / "debs", ignore=shutil.ignore_patterns(".complete"))
    package, no_claude = _claude_package()
    if package is None:
        (context / "claude-code").mkdir()
    else:
        shutil.copytree(package, context / "claude-code", copy_function=_link_or_copy)
    shutil.copy(ROOT / "Containerfile", context / "Containerfile")
    previous = _image_id(env, IMAGE)
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
    if previous is not None and previous != _image_id(env, IMAGE):
        # The build before this one, now untagged: its layers that this one shares stay.
        subprocess.run(["podman", "rmi", previous], env=env, capture_output=True, check=False)
    return Image(env=env, tag=IMAGE, no_claude=no_claude)


def _image_id(env: dict[str, str], tag: str) -> str | None:
    found = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", tag],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return found.stdout.decode().strip() or None if found.returncode == 0 else None


def container_logs(env: dict[str, str], name: str) -> str:
    result = subprocess.run(
        ["podman", "logs", name], env=env, capture_output=True, timeout=60, check=True
    )
    return (result.stdout + result.stderr).decode()


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


def container_processes(env: dict[str, str], name: str) -> list[str]:
    """`pid args` of every process in the container, as podman top sees them from the host."""
    lines = podman(env, "top", name, "pid", "args").splitlines()[1:]
    return [line.strip() for line in lines if line.strip()]


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
