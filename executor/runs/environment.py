"""A child's environment: the daemon's pass-list plus what the request may set.

Three rules decide what a request may set, in this order:

1. **Reserved names** (-32602): markers a parent agent sets for its own children (``CCX_``,
   ``CLAUDECODE``, ``CLAUDE_CODE_ENTRYPOINT``); a run must never inherit them from a request.
2. **Start-up variables** (-32001, rule ``env.startup_allow``): variables that make a program
   load or run other code before (or instead of) its own — the dynamic loader's, the shells'
   and the interpreters' (``STARTUP_NAMES``, ``STARTUP_PREFIXES``).  Through them a request
   could run anything inside an allowed command (``LD_PRELOAD`` into ``cat``), so they are
   refused unless the policy file names them in ``[env] startup_allow`` (exact names, no
   globs).  The list, and why each is on it, is config/startup.py; for the Claude CLI the
   class also holds its own ``CLAUDE_*`` variables.  A name listed in ``startup_allow`` needs
   nothing else.
3. **The request allow-list** (-32001, rule ``env.request_allow``): with ``[env]
   request_allow``, every other name must match one of its globs.

Finally a request's ``PATH`` must list absolute directories only (-32001, rule
``absolute_path``): exec searches a relative or empty entry from the run's cwd, which the
client chooses, so such a PATH would let it pick the file an allowed name runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from cc_executor.executor.config.server import RESERVED_ENV_PREFIXES, ServerConfig
from cc_executor.executor.config.startup import is_startup_variable
from cc_executor.protocol import InvalidParams, PolicyRefused

# Markers a parent agent sets for its own children, and the daemon's own settings: a run never
# inherits them, and a request may not set them (one list, config/server.py's).
RESERVED_PREFIXES = RESERVED_ENV_PREFIXES


def _check_path(value: str) -> None:
    for entry in value.split(os.pathsep):
        if not os.path.isabs(entry):
            shown = entry or "(empty)"
            raise PolicyRefused(
                f"PATH entry {shown!r} is not an absolute directory: exec would search it "
                "from the run's cwd; a request's PATH may list absolute directories only",
                {"rule": "absolute_path", "variable": "PATH", "entry": entry},
            )


def check_request_env(
    request_env: Mapping[str, str],
    startup_allow: Sequence[str],
    request_allow: Sequence[str] | None,
    *,
    claude: bool,
) -> None:
    """Raise unless a request may set every variable of `request_env` (module docstring)."""
    for name, value in request_env.items():
        if name.startswith(RESERVED_PREFIXES):
            raise InvalidParams(f"environment variable {name} is reserved", {"variable": name})
        if is_startup_variable(name, claude=claude):
            if name in startup_allow:
                continue
            raise PolicyRefused(
                f"environment variable {name} changes how a program starts "
                "(a loader, shell or interpreter start-up variable); the policy does not "
                "allow requests to set it",
                {"rule": "env.startup_allow", "variable": name},
            )
        if request_allow is not None and not any(fnmatchcase(name, p) for p in request_allow):
            raise PolicyRefused(
                f"environment variable {name} is not one a request may set",
                {"rule": "env.request_allow", "variable": name, "allowed": list(request_allow)},
            )
        if name == "PATH":
            _check_path(value)


def child_environment(
    config: ServerConfig, request_env: Mapping[str, str], *, claude: bool = False
) -> dict[str, str]:
    """The complete environment of a child: the pass-list from the daemon plus the request's.

    Raises:
        InvalidParams: a reserved name.
        PolicyRefused: a name or a PATH the policy does not let a request set.
    """
    policy = config.policy
    check_request_env(request_env, policy.startup_env, policy.request_env, claude=claude)
    env = {name: os.environ[name] for name in config.pass_env if name in os.environ}
    env.update(request_env)
    return env
