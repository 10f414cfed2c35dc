"""The ``GET /health`` document, in the original CC-Executor's shape.

The original (core/main.py at 3429fb5) answered ``/health`` with 200 and
``{"status": "healthy", "service", "version", "active_sessions", "max_sessions",
"uptime_seconds"}``; its health-check script and its Dockerfile's HEALTHCHECK probe it.  We keep
its keys, types and order, with our own service name and version, and add ``draining``.  It
answers 200 whenever the daemon is alive, as ``/healthz`` does; readiness is ``/readyz``.
"""

import orjson

SERVICE = "cc-executor"


def health_document(
    *,
    version: str,
    active_sessions: int,
    max_sessions: int,
    uptime_seconds: float,
    draining: bool,
) -> bytes:
    """The JSON body of a ``GET /health`` answer."""
    return orjson.dumps(
        {
            "status": "healthy",
            "service": SERVICE,
            "version": version,
            "active_sessions": active_sessions,
            "max_sessions": max_sessions,
            "uptime_seconds": round(uptime_seconds, 3),
            "draining": draining,
        }
    )
