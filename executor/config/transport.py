"""The numbers the transport uses beyond the limits in ServerConfig (queues, closes, accept)."""

from __future__ import annotations

import attrs

from cc_executor.executor.transport.inbound import ASSEMBLY_BYTES


@attrs.frozen
class TransportConfig:
    """Settings of connections and the listener; every field has a safe default."""

    # Requests read from a connection and not yet handled, in bytes.  The reader answers
    # pings as long as the client has no more than this unread ahead of its ping; beyond it
    # the daemon stops reading from that client (its TCP window closes), so memory is bounded
    # by this plus one message being assembled (max_message_bytes).
    inbound_queue_bytes: int = attrs.field(default=1024 * 1024, validator=attrs.validators.gt(0))
    # Messages being received (not yet whole) on all connections together, in bytes: past
    # it, the connection whose next part does not fit is closed with 1013 (try again later).
    # Each connection assembles at most one message of max_message_bytes, so without it 1024
    # connections could hold 8 GiB.  Never less than max_message_bytes in effect.
    assembly_bytes: int = attrs.field(default=ASSEMBLY_BYTES, validator=attrs.validators.gt(0))
    # The WebSocket close handshake (close frame, the peer's reply, TCP close) takes at most
    # this long; then the socket is closed anyway.
    close_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    # Keepalive (the original CC-Executor's WS_PING_INTERVAL / WS_PING_TIMEOUT): every
    # ping_interval seconds the daemon pings each WebSocket client, and drops (1006) one whose
    # pong has not come ping_timeout seconds later -- a client that hung, or vanished without
    # a FIN or RST; its runs then end as for any dropped client.  0 (the default) sends none.
    # (Checked by config.server.validate: they come from flags and variables.)
    ping_interval: float = 0.0
    ping_timeout: float = 30.0
    # accept() failing for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM):
    # stop accepting this long, then retry (the connection waits in the kernel's backlog).
    accept_retry_delay: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
