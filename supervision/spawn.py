"""Starting a run's root process: its own session, enlarged pipes, and the run marker.

The root gets a new session (start_new_session: pgid = sid = pid) so that the whole group can
be signalled without touching the daemon, and CCX_RUN_ID=<run_id> in its environment so that
descendants which later leave the group and session can still be attributed to the run (and,
given a daemon id, CCX_DAEMON=<it>: what a later daemon kills if this one dies first).

Resource limits (``ResourceLimits``: RLIMIT_CPU/AS/NOFILE/NPROC) are applied by exec'ing the
command through util-linux ``prlimit`` (``prlimit --nofile=N:N ... -- argv``), which sets them
on itself and execs the command in the same process.  The alternatives are worse: ``preexec_fn``
makes subprocess fork() instead of vfork() (the cost grows with the daemon's memory: measured
3 ms per spawn at 50 MB RSS, 18 ms at 500 MB, against 0.6 ms) and is unsafe with threads;
``prlimit(pid)`` after the spawn races the child's own exec and forks.  The wrapper costs one
extra exec (about 0.7 ms) and only runs when limits are configured.  Because prlimit, not we,
then execs the command, we look the program up first so "command not found" is still a
SpawnError.

What runs is ``SpawnSpec.executable`` when the caller gives one: the real path it found with
``locate`` (as exec would, in the run's cwd, on the run's PATH) and checked, so the file exec'd
is the file checked whatever a symlink or a relative name would lead to by then.  The child's
argv[0] stays as the request wrote it — except under prlimit, which can only exec its argv[0],
so there the program sees the resolved path.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs
import structlog
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import SpawnError
from cc_executor.supervision.marker import DAEMON_VAR, RUN_ID_VAR

log = structlog.get_logger()


def _argv(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class ResourceLimits:
    """Per-run resource limits (soft = hard), set in the child before the command runs.

    Attributes:
        cpu_seconds: RLIMIT_CPU: CPU time; the kernel sends SIGXCPU, then SIGKILL.
        address_space_bytes: RLIMIT_AS: virtual memory; allocations beyond it fail.
        open_files: RLIMIT_NOFILE: the highest file descriptor number + 1.
        processes: RLIMIT_NPROC: processes of the *user* (all of its processes count, not
            only the run's), beyond which fork() fails.
    """

    cpu_seconds: int | None = None
    address_space_bytes: int | None = None
    open_files: int | None = None
    processes: int | None = None

    @property
    def configured(self) -> bool:
        return any(value is not None for value in attrs.astuple(self))

    def prlimit_args(self) -> tuple[str, ...]:
        """prlimit(1) options setting every configured limit (soft and hard)."""
        options = (
            ("--cpu", self.cpu_seconds),
            ("--as", self.address_space_bytes),
            ("--nofile", self.open_files),
            ("--nproc", self.processes),
        )
        return tuple(f"{name}={value}:{value}" for name, value in options if value is not None)


def locate(program: str, cwd: str | None, env: Mapping[str, str]) -> str | None:
    """The real path of the file exec would run for `program`, or None if there is none.

    Exactly exec's search: a name with a '/' is taken relative to `cwd` (None: ours); any other
    is looked for in each entry of ``env["PATH"]`` (``os.defpath`` without one), a relative or
    empty entry again relative to `cwd`; the first regular file we may execute wins.
    """
    base = os.getcwd() if cwd is None else cwd
    if "/" in program:
        candidates = [os.path.join(base, program)]
    else:
        candidates = [os.path.join(base, entry, program) for entry in os.get_exec_path(env)]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    return None


@functools.cache
def find_prlimit() -> str | None:
    """util-linux prlimit on the daemon's PATH (or /usr/bin), or None."""
    path = os.pathsep.join(filter(None, (os.environ.get("PATH"), "/usr/bin", "/bin")))
    return shutil.which("prlimit", path=path)


@attrs.frozen
class SpawnSpec:
    """What to run and how.

    Attributes:
        argv: program and arguments; the program is looked up in env["PATH"] if it has no '/'.
        env: the complete child environment, built by the caller (CCX_RUN_ID is added).
        executable: the file to exec instead of looking argv[0] up (an absolute real path,
            from ``locate``); argv[0] is then only what the child sees as its name.
        run_id: the run's id, also its marker in the environment.
        cwd: working directory, or None for the daemon's.
        stdin: "null" for /dev/null, "pipe" to write to it through Run.write_stdin.
        resources: resource limits set in the child before the command runs (see above).
        max_output_bytes: the run is cancelled once stdout and stderr together exceed this.
    """

    argv: tuple[str, ...] = attrs.field(converter=_argv)
    env: Mapping[str, str]
    run_id: str
    executable: str | None = None
    cwd: str | None = None
    stdin: Literal["null", "pipe"] = "null"
    resources: ResourceLimits | None = None
    max_output_bytes: int | None = None


class Child:
    """The root process: a ``subprocess.Popen`` made on the event loop's own thread.

    ``Popen`` vfork()s and returns once the child has exec'd (or failed to), well under a
    millisecond, so there is no worker thread to hand the spawn to and back (trio's
    ``open_process`` does that: it was a third of the daemon's CPU for a burst of runs).
    Waiting is on a pidfd; reaping goes through ``Popen`` so that its own bookkeeping (and its
    ``_cleanup`` of unfinished children) never reaps a pid it no longer owns.
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def poll(self) -> int | None:
        """Reap the process if it has exited (without waiting); its returncode, or None."""
        return self._popen.poll()

    async def wait(self) -> int:
        """Wait for the process to exit and reap it; return its returncode."""
        delay = 0.001
        while self._popen.poll() is None:
            try:
                pidfd = os.pidfd_open(self.pid)
            except OSError:  # no descriptor to wait with (EMFILE): poll, backing off
                await trio.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                trio.lowlevel.notify_closing(pidfd)
                os.close(pidfd)
        returncode = self._popen.returncode
        assert returncode is not None
        return returncode


@attrs.frozen(eq=False)
class Spawned:
    """A freshly started root process and the parent's ends of its pipes."""

    process: Child
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


def _with_limits(spec: SpawnSpec, env: Mapping[str, str]) -> tuple[list[str], str | None]:
    """(argv, executable) that apply ``spec.resources`` through prlimit, then run the command."""
    argv = list(spec.argv)
    if spec.resources is None or not spec.resources.configured:
        return argv, spec.executable
    wrapper = find_prlimit()
    if wrapper is None:
        raise SpawnError("resource limits are configured but prlimit (util-linux) is missing")
    program = spec.executable or locate(argv[0], spec.cwd, env)
    if program is None:
        candidate = os.path.join(spec.cwd or os.getcwd(), argv[0])
        exists = "/" in argv[0] and os.path.exists(candidate)
        raise SpawnError(
            f"permission denied: {argv[0]}" if exists else f"command not found: {argv[0]}"
        )
    return [wrapper, *spec.resources.prlimit_args(), "--", program, *argv[1:]], None


async def spawn(
    spec: SpawnSpec, config: SupervisionConfig, *, daemon_id: str | None = None
) -> Spawned:
    """Start the root process of a run; `daemon_id` (RunRegistry.daemon_id) marks it too.

    Raises:
        SpawnError: the command could not be started (the message explains why).
    """
    await trio.lowlevel.checkpoint()
    if not spec.argv or not spec.argv[0]:
        raise SpawnError("empty command")
    env = dict(spec.env)
    env[RUN_ID_VAR] = spec.run_id
    if daemon_id is not None:
        env[DAEMON_VAR] = daemon_id
    argv, executable = _with_limits(spec, env)
    fds: list[int] = []
    streams: list[trio.lowlevel.FdStream] = []
    try:
        child_stdin: int = subprocess.DEVNULL
        stdin_write: int | None = None
        try:
            out_read, out_write = _output_pipe(config)
            fds += [out_read, out_write]
            err_read, err_write = _output_pipe(config)
            fds += [err_read, err_write]
            if spec.stdin == "pipe":
                child_stdin, stdin_write = os.pipe2(os.O_CLOEXEC)
                fds += [child_stdin, stdin_write]
        except OSError as exc:  # EMFILE, ENFILE: no descriptors left for the run's pipes
            log.info("spawn.failed", run_id=spec.run_id, error=str(exc))
            raise SpawnError(f"cannot make the run's pipes: {exc.strerror or exc}") from None
        try:
            # vfork + exec: returns once the child has exec'd; no thread hand-off (see Child).
            popen = subprocess.Popen(  # noqa: ASYNC220
                argv,
                executable=executable,
                stdin=child_stdin,
                stdout=out_write,
                stderr=err_write,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            message = _describe(exc, spec)
            log.info("spawn.failed", run_id=spec.run_id, error=message)
            raise SpawnError(message) from None
        process = Child(popen)
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
