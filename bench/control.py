"""W4 client side: PAUSE / RESUME cycles, then CANCEL, on a run flooding at full speed.

While it waits for a reply the client keeps reading the socket (so the reply is never stuck
behind unread output) and polls /proc for the run's processes, so it sees both when the reply
arrives and when every process of the run reached the stopped state.
"""

from __future__ import annotations

import time
from typing import Any

from bench import procfs
from bench.streams import firehose_argv
from bench.wsclient import WsClient, connect

STEP_BOUND = 10.0  # no single control step may take longer than this
WARMUP = 0.3  # seconds of flooding before the first PAUSE
SETTLE = 0.05  # seconds between a reply and the next request
# While a reply is awaited, /proc is polled this often: often enough to time the stop, rarely
# enough that the client does not spin and take CPU from the daemon it measures.
PROC_POLL = 0.0002


class _Watcher:
    """Reads frames as they come, remembering what the workload needs to know."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.output_bytes = 0
        # id -> (when it arrived, the reply, output bytes received up to and including then)
        self.replies: dict[int, tuple[float, Any, int]] = {}
        self.completed_at: float | None = None
        self.last_output_at = 0.0

    def poll(self, timeout: float) -> None:
        """Handle every frame available within `timeout` seconds."""
        while self.client.readable(timeout):
            timeout = 0.0
            message = self.client.read_message()
            now = time.perf_counter()
            method = message.get("method")
            if method == "process.output":
                self.output_bytes += len(message["params"]["data"])
                self.last_output_at = now
            elif method == "process.completed":
                self.completed_at = now
            elif "id" in message:
                self.replies[message["id"]] = (now, message, self.output_bytes)

    def pump_for(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            self.poll(min(left, 0.01))


def control(port: int, cycles: int, line: str) -> dict[str, Any]:
    """Returns per-cycle latencies in seconds and the bytes that arrived after each PAUSE reply."""
    client = connect(port)
    watcher = _Watcher(client)
    request_id = client.request("execute", {"argv": firehose_argv(10**15, line)})
    deadline = time.perf_counter() + STEP_BOUND
    while request_id not in watcher.replies and time.perf_counter() < deadline:
        watcher.poll(0.01)
    started = watcher.replies[request_id][1]["result"]
    run, pgid = started["run"], started["pgid"]
    watcher.pump_for(WARMUP)
    members = procfs.group_members(pgid)
    pause_reply, pause_stopped, after_pause, stopped_at_reply = [], [], [], []
    resume_reply, resume_output = [], []
    for _ in range(cycles):
        sent = time.perf_counter()
        pause_id = client.request("control", {"type": "PAUSE", "run": run})
        stopped_at = None
        end = sent + STEP_BOUND
        while pause_id not in watcher.replies and time.perf_counter() < end:
            watcher.poll(PROC_POLL)
            if stopped_at is None and procfs.all_stopped(members):
                stopped_at = time.perf_counter()
        replied_at, reply, bytes_at_reply = watcher.replies[pause_id]
        if "error" in reply:
            raise RuntimeError(f"PAUSE failed: {reply['error']}")
        stopped_at_reply.append(procfs.all_stopped(members))
        if stopped_at is None:
            stopped_at = time.perf_counter() if stopped_at_reply[-1] else replied_at
        pause_reply.append(replied_at - sent)
        pause_stopped.append(stopped_at - sent)
        watcher.pump_for(SETTLE)
        after_pause.append(watcher.output_bytes - bytes_at_reply)

        sent = time.perf_counter()
        first_output = None
        resume_id = client.request("control", {"type": "RESUME", "run": run})
        while time.perf_counter() < sent + STEP_BOUND:
            watcher.poll(0.001)
            if first_output is None and watcher.last_output_at > sent:
                first_output = watcher.last_output_at
            if first_output is not None and resume_id in watcher.replies:
                break
        if "error" in watcher.replies[resume_id][1]:
            raise RuntimeError(f"RESUME failed: {watcher.replies[resume_id][1]['error']}")
        resume_reply.append(watcher.replies[resume_id][0] - sent)
        resume_output.append((first_output or sent + STEP_BOUND) - sent)
        watcher.pump_for(SETTLE)

    sent = time.perf_counter()
    cancel_id = client.request("control", {"type": "CANCEL", "run": run})
    while watcher.completed_at is None and time.perf_counter() < sent + STEP_BOUND:
        watcher.poll(0.01)
    if watcher.completed_at is None or cancel_id not in watcher.replies:
        raise TimeoutError("CANCEL did not complete the run")
    client.close()
    return {
        "members": len(members),
        "pause_reply": pause_reply,
        "pause_stopped": pause_stopped,
        "stopped_at_reply": sum(stopped_at_reply),
        "bytes_after_pause_reply": after_pause,
        "resume_reply": resume_reply,
        "resume_first_output": resume_output,
        "cancel_completed": watcher.completed_at - sent,
    }
