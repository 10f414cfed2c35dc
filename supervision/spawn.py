"""Starting a run's root process: its own session, enlarged pipes, and the run marker.

The root gets a new session (start_new_session: pgid = sid = pid) so that the whole group can
be signalled without touching the daemon, and CCX_RUN_ID=<run_id> in its environment so that
descendants which later leave the group and session can still be attributed to the run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs
import structlog
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import SpawnError
from cc_executor.supervision.marker import RUN_ID_VAR

log = structlog.get_logger()


def _argv(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class SpawnSpec:
    """What to run and how.

    Attributes:
        argv: program and arguments; the program is looked up in env["PATH"] if it has no '/'.
        env: the complete child environment, built by the caller (CCX_RUN_ID is added).
        run_id: the run's id, also its marker in the environment.
        cwd: working directory, or None for the daemon's.
        stdin: "null" for /dev/null, "pipe" to write to it through Run.write_stdin.
    """

    argv: tuple[str, ...] = attrs.field(converter=_argv)
    env: Mapping[str, str]
    run_id: str
    cwd: str | None = None
    stdin: Literal["null", "pipe"] = "null"


@attrs.frozen(eq=False)
class Spawned:
    """A freshly started root process and the parent's ends of its pipes."""

    process: trio.Process
    stdout: trio.lowlevel.FdStream
    stderr: trio.lowlevel.FdStream
    stdin: trio.lowlevel.FdStream | None


def _output_pipe(config: SupervisionConfig) -> tuple[int, int]:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        # A bigger pipe means fewer wakeups under a firehose; it is only a hint.
        fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, config.pipe_size)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EBUSY, errno.EINVAL):
            os.close(read_fd)
            os.close(write_fd)
            raise
    return read_fd, write_fd


def _describe(exc: BaseException, spec: SpawnSpec) -> str:
    """A message for a human: what could not be started, and why."""
    if isinstance(exc, ValueError):
        return f"invalid command or environment: {exc}"
    if not isinstance(exc, OSError):
        return f"cannot start {spec.argv[0]}: {exc}"
    if spec.cwd is not None and exc.filename == spec.cwd:
        if exc.errno == errno.ENOENT:
            return f"cwd does not exist: {spec.cwd}"
        if exc.errno == errno.ENOTDIR:
            return f"cwd is not a directory: {spec.cwd}"
        return f"cannot enter cwd {spec.cwd}: {exc.strerror}"
    program = spec.argv[0]
    if exc.errno == errno.ENOENT:
        return f"command not found: {program}"
    if exc.errno == errno.EACCES:
        return f"permission denied: {program}"
    if exc.errno == errno.E2BIG:
        return "argument list too long"
    if exc.errno == errno.ENOEXEC:
        return f"not an executable: {program}"
    return f"cannot start {program}: {exc.strerror or exc}"


async def spawn(spec: SpawnSpec, config: SupervisionConfig) -> Spawned:
    """Start the root process of a run.

    Raises:
        SpawnError: the command could not be started (the message explains why).
    """
    if not spec.argv or not spec.argv[0]:
        raise SpawnError("empty command")
    env = dict(spec.env)
    env[RUN_ID_VAR] = spec.run_id
    fds: list[int] = []
    streams: list[trio.lowlevel.FdStream] = []
    try:
        out_read, out_write = _output_pipe(config)
        fds += [out_read, out_write]
        err_read, err_write = _output_pipe(config)
        fds += [err_read, err_write]
        child_stdin: int = subprocess.DEVNULL
        stdin_write: int | None = None
        if spec.stdin == "pipe":
            child_stdin, stdin_write = os.pipe2(os.O_CLOEXEC)
            fds += [child_stdin, stdin_write]
        try:
            process = await trio.lowlevel.open_process(
                list(spec.argv),
                stdin=child_stdin,
                stdout=out_write,
                stderr=err_write,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            message = _describe(exc, spec)
            log.info("spawn.failed", run_id=spec.run_id, error=message)
            raise SpawnError(message) from None
        # From here the parent keeps only its own ends; FdStream owns them.
        for fd in (out_write, err_write) + (() if stdin_write is None else (child_stdin,)):
            os.close(fd)
            fds.remove(fd)
        stdout = trio.lowlevel.FdStream(out_read)
        fds.remove(out_read)
        streams.append(stdout)
        stderr = trio.lowlevel.FdStream(err_read)
        fds.remove(err_read)
        streams.append(stderr)
        stdin = None
        if stdin_write is not None:
            stdin = trio.lowlevel.FdStream(stdin_write)
            fds.remove(stdin_write)
        streams.clear()
        return Spawned(process=process, stdout=stdout, stderr=stderr, stdin=stdin)
    finally:
        for fd in fds:
            os.close(fd)
        for stream in streams:
            # Only reached on an unexpected error after the spawn; the fds are ours to drop.
            stream.close()
