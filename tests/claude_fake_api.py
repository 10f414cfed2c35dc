"""A fake Anthropic Messages API on loopback, for running the real Claude Code CLI offline.

It speaks just enough of the API (see /work/shared/notes/claude-code-offline.md): `HEAD /` for
the CLI's preflight, and `POST /v1/messages` with `stream: true` answered with Server-Sent
Events.  What it answers is chosen by markers in the last user text of the request:

- ``[tool:<command>]``: a Bash ``tool_use`` for <command>; once the request carries the
  ``tool_result``, a final text ``The tool said: <result>``.
- ``[mcp:<tool> <base64 of a JSON object>]``: the same with a ``tool_use`` of the MCP tool
  <tool> (``mcp__<server>__<name>``) and that object as its input.
- ``[stall]``: starts a text block, then sends nothing more and holds the connection open
  until the server stops (a stream that stalls mid-message).
- ``[slow:<n>]``: a text reply streamed in <n> deltas ``chunk <i> `` a tenth of a second
  apart (a turn still running when the test acts on it).
- ``[chunks:<n>]``: the same <n> deltas at once (a long streamed reply, for the benchmark).
- ``[error:<status>]``: an HTTP error (429, 529, 500...) with the API's error body and
  ``x-should-retry: false`` so the CLI reports it at once instead of retrying for minutes.
- anything else: a plain text reply ``Hi! (fake API)``.

It runs in a thread (stdlib http.server) so that it is independent of the event loop the
tests drive the daemon with.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PLAIN_TEXT = "Hi! (fake API)"
_TOOL = re.compile(r"\[tool:(?P<command>[^\]]+)\]")
_MCP = re.compile(r"\[mcp:(?P<tool>\S+) (?P<input>[A-Za-z0-9+/=]+)\]")
_ERROR = re.compile(r"\[error:(?P<status>\d{3})\]")
_SLOW = re.compile(r"\[slow:(?P<chunks>\d+)\]")
_CHUNKS = re.compile(r"\[chunks:(?P<chunks>\d+)\]")
SLOW_DELAY = 0.1
_ERROR_TYPES = {
    429: "rate_limit_error",
    529: "overloaded_error",
    500: "api_error",
}


def _last_user_content(body: dict[str, Any]) -> list[dict[str, Any]]:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return [{"type": "text", "text": content}]
            return list(content or [])
    return []


def _last_text(content: list[dict[str, Any]]) -> str:
    """The last text block of a message: the prompt itself (the CLI puts its reminders
    first, and merges a message after an interrupted turn into the one before)."""
    texts = [b.get("text", "") for b in content if b.get("type") == "text"]
    return texts[-1] if texts else ""


def _user_texts(body: dict[str, Any]) -> str:
    """The text of the latest user message that has any: the prompt of the turn being
    answered (a tool round trip's last message carries only the tool_result), so a marker
    of an earlier turn of a session does not act again."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content or [] if b.get("type") == "text"]
        if texts:
            return "\n".join(texts)
    return ""


class FakeApi:
    """The server's state: its address, the requests it saw, and a stop switch for stalls."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.stalled = threading.Event()  # set once a [stall] stream has gone quiet
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _message_start(model: str) -> bytes:
    return _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 10,
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
        },
    )


def _text_block(index: int, text: str) -> bytes:
    return (
        _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
        + _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": text},
            },
        )
        + _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    )


def _tool_block(index: int, command: str, tool: str = "Bash", partial: str = "") -> bytes:
    tool_id = f"toolu_{uuid.uuid4().hex[:24]}"
    bash = {"command": command, "description": "Run the requested command"}
    partial = partial or json.dumps(bash)
    return (
        _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": tool_id, "name": tool, "input": {}},
            },
        )
        + _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": partial},
            },
        )
        + _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    )


def _message_end(stop_reason: str) -> bytes:
    return _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
    ) + _sse("message_stop", {"type": "message_stop"})


def _make_handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests' output stays readable

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._json(
                404, {"type": "error", "error": {"type": "not_found_error", "message": "no"}}
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            api.requests.append({"path": self.path, "body": body})
            if not self.path.split("?", 1)[0].endswith("/v1/messages"):
                self._json(
                    404,
                    {"type": "error", "error": {"type": "not_found_error", "message": self.path}},
                )
                return
            self._messages(body)

        def _json(self, status: int, payload: dict[str, Any], **headers: str) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(data)

        def _messages(self, body: dict[str, Any]) -> None:
            text = _user_texts(body)
            error = _ERROR.search(text)
            if error:
                status = int(error["status"])
                kind = _ERROR_TYPES.get(status, "api_error")
                self._json(
                    status,
                    {
                        "type": "error",
                        "error": {"type": kind, "message": f"fake API says {status}"},
                    },
                    x_should_retry="false",
                    request_id=f"req_fake_{uuid.uuid4().hex[:12]}",
                )
                return
            model = str(body.get("model", "claude-fake"))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.send_header("request-id", f"req_fake_{uuid.uuid4().hex[:12]}")
            self.end_headers()
            self.close_connection = True
            last = _last_user_content(body)
            results = [block for block in last if block.get("type") == "tool_result"]
            tool = _TOOL.search(text)
            if "[stall]" in _last_text(last):
                self._send(
                    _message_start(model)
                    + _sse(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "text", "text": ""},
                        },
                    )
                    + _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": "Thinking"},
                        },
                    )
                )
                api.stalled.set()
                api.stopping.wait()
                return
            slow = _SLOW.search(_last_text(last))
            if slow and not results:
                self._slow(model, int(slow["chunks"]))
                return
            chunks = _CHUNKS.search(_last_text(last))
            if chunks and not results:
                self._slow(model, int(chunks["chunks"]), delay=0.0)
                return
            mcp = _MCP.search(text)
            if mcp and not results:
                partial = base64.b64decode(mcp["input"]).decode()
                self._send(
                    _message_start(model)
                    + _tool_block(0, "", tool=mcp["tool"], partial=partial)
                    + _message_end("tool_use")
                )
                return
            if tool and not results:
                self._send(
                    _message_start(model)
                    + _text_block(0, "I'll run that.")
                    + _tool_block(1, tool["command"])
                    + _message_end("tool_use")
                )
                return
            if results:
                content = results[-1].get("content")
                if isinstance(content, list):
                    content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
                reply = f"The tool said: {content}"
            else:
                reply = PLAIN_TEXT
            self._send(_message_start(model) + _text_block(0, reply) + _message_end("end_turn"))

        def _slow(self, model: str, chunks: int, delay: float = SLOW_DELAY) -> None:
            self._send(
                _message_start(model)
                + _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            for i in range(chunks):
                if delay and api.stopping.wait(delay):
                    return
                delta = {"type": "text_delta", "text": f"chunk {i} "}
                self._send(
                    _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": 0, "delta": delta},
                    )
                )
            self._send(
                _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
                + _message_end("end_turn")
            )

        def _send(self, data: bytes) -> None:
            try:
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@contextmanager
def serve_fake_api() -> Iterator[FakeApi]:
    """Serve the fake API on 127.0.0.1 (a free port) in a thread, for the block's duration."""
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(api))
    server.daemon_threads = True
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="fake-anthropic-api", daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
