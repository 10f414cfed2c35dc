"""The daemon and its clients: configuration, logging, the WebSocket server, sessions, the CLI."""

VERSION = "0.1.0"
