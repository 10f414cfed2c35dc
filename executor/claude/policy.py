"""What a `claude` request may ask for: its flags and its environment.

Unless the daemon is configured as sandboxed, no request may bypass the CLI's permission checks
(``--dangerously-skip-permissions``, ``--permission-mode bypassPermissions`` or their
``extra_args`` forms); every other flag in ``extra_args`` must be on ``claude.allowed_flags``.
The environment is the daemon's pass-list plus the request's, minus variables reserved for the
daemon's own configuration (credentials and endpoints), plus the operator's settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cc_executor.executor.config.claude import (
    PERMISSION_BYPASS_FLAGS,
    ClaudeConfig,
    permission_bypass,
)
from cc_executor.executor.runs.policy import child_environment
from cc_executor.protocol import InvalidParams, PolicyRefused, SpawnFailed
from cc_executor.protocol.claude import ClaudeParams

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon

# Variables a request may not set: credentials and endpoints come from configuration only.
RESERVED_ENV_PREFIXES = ("ANTHROPIC_", "IS_SANDBOX", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "CCX_")


# -- policy ----------------------------------------------------------------------------------


def _refuse_bypass(what: str, config: ClaudeConfig) -> None:
    if not config.sandboxed:
        raise PolicyRefused(
            f"{what} is refused: the daemon is not configured as sandboxed "
            "(rule: claude.sandboxed)",
            {"rule": "claude.sandboxed", "flag": what},
        )


def check_flags(params: ClaudeParams, config: ClaudeConfig) -> None:
    """Raise PolicyRefused unless every flag of the request is allowed."""
    if params.dangerously_skip_permissions:
        _refuse_bypass("--dangerously-skip-permissions", config)
    if params.permission_mode == "bypassPermissions":
        _refuse_bypass("--permission-mode bypassPermissions", config)
    bypass = permission_bypass(params.extra_args)
    if bypass is not None:
        _refuse_bypass(bypass, config)
    for arg in params.extra_args:
        name = arg.split("=", 1)[0]
        if not arg.startswith("-") or name in PERMISSION_BYPASS_FLAGS:
            continue
        if name not in config.allowed_flags and name != "--permission-mode":
            raise PolicyRefused(
                f"flag {name} is not allowed in extra_args (rule: claude.allowed_flags)",
                {"rule": "claude.allowed_flags", "flag": name},
            )


def claude_environment(
    daemon: Daemon, request_env: Mapping[str, str], daemon_env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """A Claude run's environment: the pass-list, the operator's settings, the request's."""
    config = daemon.config.claude
    for name in request_env:
        if name.startswith(RESERVED_ENV_PREFIXES):
            raise InvalidParams(
                f"environment variable {name} is reserved for the daemon's configuration",
                {"variable": name},
            )
    env = {
        name: value
        for name, value in child_environment(daemon.config, request_env).items()
        if not name.startswith(RESERVED_ENV_PREFIXES)
    }
    env.update(config.env)
    if config.base_url is not None:
        env["ANTHROPIC_BASE_URL"] = config.base_url
    if config.api_key_env is not None:
        key = daemon_env.get(config.api_key_env)
        if not key:
            raise SpawnFailed(
                f"the daemon has no {config.api_key_env} to pass as the API key "
                "(setting: claude.api_key_env)",
                {"setting": "claude.api_key_env"},
            )
        env["ANTHROPIC_API_KEY"] = key
    if config.sandboxed:
        env["IS_SANDBOX"] = "1"
    else:
        env.pop("IS_SANDBOX", None)
    return env
