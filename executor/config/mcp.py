"""The numbers the MCP endpoint uses (progress, output bounds, tasks)."""

from __future__ import annotations

import attrs


@attrs.frozen
class McpConfig:
    """Settings of MCP sessions; every field has a safe default."""

    # A call with a progressToken gets at most one notifications/progress per this many
    # seconds (output is coalesced: the message carries the latest), and one at least every
    # heartbeat_interval while the run is quiet (clients drop calls after ~60 s of silence).
    progress_interval: float = 0.5
    heartbeat_interval: float = 15.0
    # How much of the latest output a progress message carries.
    progress_message_bytes: int = 2048
    # How much of the end of stdout and of stderr a run's result carries.
    result_tail_bytes: int = 64 * 1024
    # Output kept in memory per non-durable MCP run for read_output (durable runs read
    # their journal).
    output_buffer_bytes: int = 4 * 1024 * 1024
    # read_output's default and largest page of data.
    read_default_bytes: int = 64 * 1024
    read_max_bytes: int = 1024 * 1024
    # Tasks: retention after creation (a request may ask for less, never more) and the
    # polling interval we suggest.
    task_ttl_ms: int = 24 * 3600 * 1000
    task_poll_interval_ms: int = 1000
    max_tasks: int = 4096
    # A Claude session started over MCP: the turns whose text and result claude_session keeps,
    # and the most text kept per turn (its end is kept).
    session_turns_kept: int = 50
    turn_text_bytes: int = 256 * 1024
