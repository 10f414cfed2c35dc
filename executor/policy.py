"""What a client may run: the command allow-list, the shell opt-in and the child environment.

The allow-list is checked on the resolved argv — after a command string has been split into
words — and on the executable it resolves to, so ``/tmp/x/echo`` does not pass as ``echo``.
Refusals are ``PolicyRefused`` errors that name the rule that refused.

The flag rule for Claude Code holds for ``execute`` too: unless the daemon is configured as
sandboxed, argv naming the CLI (``claude``, or the configured binary) may not bypass its
permission checks, and no request may set ``IS_SANDBOX``.  (A shell command line is opaque to
this rule; the shell is opt-in.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

from cc_executor.executor.claude_config import permission_bypass
from cc_executor.executor.config import ServerConfig
from cc_executor.protocol import ExecuteParams, InvalidParams, PolicyRefused

# Markers a parent agent sets for its own children; a run must never inherit them.
_STRIPPED_PREFIXES = ("CCX_", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")


def _resolve(executable: str, path: str | None) -> str | None:
    found = shutil.which(executable, path=path)
    return os.path.realpath(found) if found else None


class CommandPolicy:
    """The allow-list and shell rule, resolved once against the daemon's PATH."""

    def __init__(self, config: ServerConfig) -> None:
        self._allow_shell = config.allow_shell
        self._sandboxed = config.claude.sandboxed
        self._claude = _resolve(config.claude.binary, os.environ.get("PATH"))
        self._allowed: dict[str, str] | None = None
        if config.allowed_commands is not None:
            path = os.environ.get("PATH")
            self._allowed = {}
            for entry in config.allowed_commands:
                resolved = _resolve(entry, path)
                if resolved is not None:
                    self._allowed[resolved] = entry

    def check(self, params: ExecuteParams, argv: tuple[str, ...], env: Mapping[str, str]) -> None:
        """Raise PolicyRefused unless this request may run."""
        if params.shell and not self._allow_shell:
            raise PolicyRefused(
                "shell execution is disabled (rule: allow_shell=false); "
                "send argv or a command without shell: true",
                {"rule": "allow_shell"},
            )
        resolved = _resolve(argv[0], env.get("PATH"))
        if not self._sandboxed:
            self._check_sandbox_rule(params, argv, resolved)
        if self._allowed is None:
            return
        if resolved is None or resolved not in self._allowed:
            raise PolicyRefused(
                f"command {argv[0]!r} is not on the allow-list (rule: allowed_commands)",
                {"rule": "allowed_commands", "command": argv[0]},
            )

    def _check_sandbox_rule(
        self, params: ExecuteParams, argv: tuple[str, ...], resolved: str | None
    ) -> None:
        if "IS_SANDBOX" in params.env:
            raise PolicyRefused(
                "IS_SANDBOX is refused: the daemon is not configured as sandboxed "
                "(rule: claude.sandboxed)",
                {"rule": "claude.sandboxed", "variable": "IS_SANDBOX"},
            )
        is_claude = os.path.basename(argv[0]) == "claude" or (
            resolved is not None and resolved == self._claude
        )
        flag = permission_bypass(argv[1:]) if is_claude else None
        if flag is not None:
            raise PolicyRefused(
                f"{flag} is refused: the daemon is not configured as sandboxed "
                "(rule: claude.sandboxed)",
                {"rule": "claude.sandboxed", "flag": flag},
            )


def child_environment(config: ServerConfig, request_env: Mapping[str, str]) -> dict[str, str]:
    """The complete environment of a child: the pass-list from the daemon plus the request's."""
    env = {name: os.environ[name] for name in config.pass_env if name in os.environ}
    for name, value in request_env.items():
        if name.startswith(_STRIPPED_PREFIXES):
            raise InvalidParams(f"environment variable {name} is reserved", {"variable": name})
        env[name] = value
    return env
