"""The cc-executor JSON-RPC session: one connection's reader, its runs and the method handlers."""
