"""Transport: the listener, the connection boundary, our server WebSocket, the front door's HTTP
(probes, the upgrade gate: path, tokens, Origin) and where tokens come from."""
