"""The process's descriptors 0 to 2, made safe to use whatever the caller left open.

Imported by ``ccx serve`` and by every client command, so it imports nothing beyond the
standard library (a client command's start-up cost is what it imports: W6).
"""

from __future__ import annotations

import os
import sys


def open_standard_streams() -> None:
    """Descriptors 0 to 2 closed at start (``ccx serve 2>&-``, ``ccx run -- CMD >&-``) become
    /dev/null, so that no socket or journal ccx opens can take their place and get log lines
    or a command's output written into it (or be read as our stdin); a closed stderr then
    loses the log or ccx's messages, a closed stdout the output, never the daemon or the run,
    and ccx's exit status stays what it would have been."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's own, kept open
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
