"""What the daemon loads before it listens, so that its first requests cost what later ones do.

The request path is loaded lazily for the command line's sake (``ccx`` imports only what a
command uses): the strict converter and cattrs, the method handlers, the MCP session's.  A
daemon pays for them once, before its "listening" line, instead of on the first ``execute`` of
its life (some 70 ms of CPU on the benchmark machine: cattrs' import and the structure hooks it
generates per params class on first use).
"""

from __future__ import annotations

import importlib

from cc_executor.protocol.converter import prepare
from cc_executor.protocol.mcp_session_tools import ClaudeSessionArgs
from cc_executor.protocol.mcp_tools import ControlArgs, ListArgs, ReadOutputArgs, StatusArgs
from cc_executor.protocol.methods import METHODS

# Imported by the sessions on their first request of a kind (see their lazy imports).
REQUEST_MODULES = (
    "cc_executor.executor.rpc.handlers",
    "cc_executor.executor.rpc.claude",
    "cc_executor.executor.mcp.handlers",
)


def warm_request_path() -> str | None:
    """Import the request path and generate every params class's structure hook.  Returns why
    a module could not be read (no file descriptor at start: EMFILE): then the daemon serves
    all the same, and the first request of a kind imports what it needs, as ``ccx`` does."""
    for name in REQUEST_MODULES:
        try:
            importlib.import_module(name)
        except OSError as exc:
            return f"cannot load {name}: {exc.strerror or exc}"
    prepare(
        (*METHODS.values(), ControlArgs, StatusArgs, ListArgs, ReadOutputArgs, ClaudeSessionArgs)
    )
    return None
