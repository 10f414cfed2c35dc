"""MCP sessions (WebSocket subprotocol "mcp"): tools, progress, cancellation and tasks."""
