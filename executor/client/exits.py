"""`ccx`'s exit statuses: one per way of failing, so that scripts can tell them apart.

`ccx run` exits with its command's status (128+N when signal N ended it); these are the
statuses of ccx's own endings. Connect and handshake failures take the sysexits.h numbers that
fit them, the rest follow `docker run` (125, 127) and the shell (2, 130).
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    FAILED = 1  # a request failed: unknown run, a control the run's state refuses, ...
    USAGE = 2  # a mistake on the command line (argparse's status)
    BAD_URL = 64  # EX_USAGE: the URL is not ws://HOST[:PORT]/PATH
    WRONG_PATH = 67  # EX_NOUSER: the daemon has no endpoint at the URL's path (HTTP 404)
    NO_DAEMON = 69  # EX_UNAVAILABLE: nothing answers at the URL
    BUSY = 75  # EX_TEMPFAIL: the daemon refused the session for now (its connection limit)
    NOT_A_DAEMON = 76  # EX_PROTOCOL: something that is not cc-executor answers there
    NOT_ALLOWED = 77  # EX_NOPERM: a missing or refused token, an Origin not allowed
    EMPTY_URL = 78  # EX_CONFIG: CCX_URL is set, and empty
    OWN_FAILURE = 125  # `ccx run`: ccx failed after connecting (refused, lost), not the command
    SPAWN_FAILED = 127  # `ccx run`: the command could not be started
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
