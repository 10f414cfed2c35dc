"""Every number the supervision layer uses, in one frozen record."""

from __future__ import annotations

import attrs


@attrs.frozen
class SupervisionConfig:
    """Grace periods, limits and buffer sizes for running one process tree.

    Attributes:
        term_grace: seconds between SIGTERM and SIGKILL on the cancel ladder.
        interrupt_grace: when set, the ladder starts with SIGINT to the process group and
            waits this long for every member to be gone before SIGTERM (Claude Code then
            writes its `result` and ends its own tools); None: the ladder starts at SIGTERM.
        kill_wait: seconds to wait for the tree to be gone after SIGKILL.
        control_timeout: seconds pause/resume may wait for every member to reach the state.
        read_size: bytes asked for per read() on a stdout/stderr pipe.  It bounds what a run
            holds for a sink that does not take its output: the read being delivered, or,
            through the channel (a batching sink), at most channel_capacity + 1 reads ahead
            and one frame of what was waiting (see docs/operations.md, "Memory per stream");
            bigger reads mean fewer, bigger frames and more throughput.
        pipe_size: requested pipe capacity (F_SETPIPE_SZ); refused sizes are ignored.
        channel_capacity: events buffered between the runner and its pump.
        max_chunk: the pump's largest Output event, in bytes.
        flush_delay: seconds a partial line may wait for the rest of the line.
        batch_delay: seconds a batching sink (a journal) keeps its batch once no more output
            is waiting, for the next chunk to join it, before it writes.
        drain_timeout: seconds without pipe data, once the tree is dead, before giving up on EOF.
        state_poll_initial: first delay when polling /proc for a process state.
        state_poll_max: the delay that polling backs off to.
        procfs_retry_initial: first wait before /proc is read again after EMFILE/ENFILE.
        procfs_retry_max: the wait that those retries back off to.
        procfs_retries: how often recovery's scan for leftovers is retried (then given up).
        stdin_max_pending: bytes of stdin writes that may wait for the child to read them;
            a write beyond that is refused at once (StdinFull).
    """

    term_grace: float = 5.0
    interrupt_grace: float | None = None
    kill_wait: float = 2.0
    control_timeout: float = 5.0
    read_size: int = 128 * 1024
    pipe_size: int = 1024 * 1024
    channel_capacity: int = 2
    max_chunk: int = 256 * 1024
    flush_delay: float = 0.005
    batch_delay: float = 0.002
    drain_timeout: float = 2.0
    state_poll_initial: float = 0.0002
    state_poll_max: float = 0.001
    procfs_retry_initial: float = 0.01
    procfs_retry_max: float = 0.5
    procfs_retries: int = 10
    stdin_max_pending: int = 4 * 1024 * 1024
