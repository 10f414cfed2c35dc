"""Whether a host name names this machine: for the daemon (may it listen without tokens?) and
for its clients (are paths here paths there?). Beside both, so neither imports the other."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
