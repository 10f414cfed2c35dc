"""Transport: the front door (HTTP probes, the WebSocket handshake, tokens and Origin)."""
