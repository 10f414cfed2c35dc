"""Every number the client library and ``ccx`` use, in one frozen record."""

from __future__ import annotations

import attrs

DEFAULT_URL = "ws://127.0.0.1:8003/"


@attrs.frozen
class ClientConfig:
    """Timeouts, buffer sizes and the reconnect policy of one connection."""

    # Seconds to open the TCP connection, finish the WebSocket handshake and get `connected`.
    connect_timeout: float = 5.0
    # Seconds to wait for any reply; None waits as long as the server takes (a CANCEL takes up
    # to the daemon's term_grace, a stdin write waits for the child to read).
    request_timeout: float | None = None
    # Seconds to wait for the close handshake when leaving the connection.
    disconnect_timeout: float = 2.0
    # Events buffered per run before the reader stops reading the socket (back-pressure).
    run_buffer: int = 64
    # Largest frame accepted from the server; it never sends more than its max_frame_bytes
    # (1 MiB) for output, but replies to `list` grow with the number of runs.
    max_message_bytes: int = 16 * 1024 * 1024
    # Reconnecting for durable runs: attempts in a row, first delay, doubling up to the cap.
    reconnect_attempts: int = 8
    reconnect_delay: float = 0.1
    reconnect_delay_max: float = 3.0
    # Also pass the token as `?token=` (for proxies that drop the Authorization header).
    token_in_query: bool = False
    # Ask for output as binary frames (subprotocol ccx.binary.v1): the bytes as the child wrote
    # them, no JSON or base64.  A daemon that does not offer it sends JSON text, as before.
    binary_output: bool = True


@attrs.frozen
class CommandLineConfig:
    """The numbers `ccx` uses on top of the connection's."""

    connection: ClientConfig = attrs.field(factory=ClientConfig)
    # Seconds between redraws of the status line.
    status_interval: float = 0.25
    # `ccx run` / `attach`: after this many seconds without an event, ping the daemon; when
    # two pings in a row go unanswered for `daemon_answer_timeout` each, say it is not
    # answering (a daemon stopped with SIGSTOP, or stuck), and again once it answers.
    daemon_check_interval: float = 2.0
    daemon_answer_timeout: float = 2.0
    # Bytes read from our stdin per `stdin` request.
    stdin_chunk: int = 64 * 1024
    # Exit status of `ccx run` when ccx itself fails (like `docker run`); a spawn failure is 127.
    own_failure_status: int = 125
    spawn_failure_status: int = 127
