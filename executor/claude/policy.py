"""What a `claude` request may ask for: its flags, the paths they name, and its environment.

``vet_claude`` is the one door of the `claude` method (wire and MCP alike): it checks the
request, builds the argv, and returns the ``SpawnSpec`` the command rules (runs/policy.py)
have vetted, as for `execute`.

- Unless the daemon is configured as sandboxed, no request may bypass the CLI's permission
  checks (``--dangerously-skip-permissions``, ``--permission-mode bypassPermissions`` or their
  ``extra_args`` forms), nor pass ``--settings``, whose file or JSON can switch them off (and
  add hooks that run commands).  Every other flag in ``extra_args`` must be on
  ``claude.allowed_flags``.
- Flags that name paths are checked by value.  The CLI reads ``--add-dir`` and
  ``--mcp-config`` as variadic (``--add-dir A B`` gives two directories), so every plain
  argument after such a flag, up to the next flag, is one of its values, as is the ``=V`` form.
  An ``--mcp-config`` value must be one of the files the operator listed
  (``claude.mcp_configs``, compared as written): an MCP config can start any command.  An
  ``--add-dir`` value, resolved (``realpath``) from the run's cwd, must lie inside the cwd
  roots that hold for the CLI, and is never ``/`` unless a root is ``/``; the CLI is given the
  resolved path, so a symlink swapped after the check does not widen what it may touch.
- The environment is the daemon's pass-list plus the request's, minus variables reserved for
  the daemon's own configuration (credentials and endpoints), plus the operator's settings.
  Start-up variables — the loader's and interpreters' and the CLI's own ``CLAUDE_*`` — follow
  the start-up rule (runs/environment.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import attrs

from cc_executor.executor.config.claude import (
    PERMISSION_BYPASS_FLAGS,
    ClaudeConfig,
    permission_bypass,
)
from cc_executor.executor.runs.environment import child_environment
from cc_executor.executor.runs.policy import Vetted, inside
from cc_executor.protocol import InvalidParams, PolicyRefused, SpawnFailed
from cc_executor.protocol.claude import ClaudeParams, build_argv
from cc_executor.supervision import SpawnSpec

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon

# Variables a request may not set: credentials and endpoints come from configuration only.
RESERVED_ENV_PREFIXES = ("ANTHROPIC_", "IS_SANDBOX", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "CCX_")

# Flags of extra_args whose values are paths the policy checks.
ADD_DIR = "--add-dir"
MCP_CONFIG = "--mcp-config"


# -- flags -----------------------------------------------------------------------------------


def _refuse_bypass(what: str, config: ClaudeConfig) -> None:
    if not config.sandboxed:
        raise PolicyRefused(
            f"{what} is refused: the daemon is not configured as sandboxed",
            {"rule": "claude.sandboxed", "flag": what},
        )


def check_permission_mode(mode: str | None, config: ClaudeConfig) -> None:
    """Raise PolicyRefused for a mode this daemon does not allow: at the start of a run, and
    for `claude.set_permission_mode` on a live session (the same rule both ways)."""
    if mode == "bypassPermissions":
        _refuse_bypass("--permission-mode bypassPermissions", config)


def check_flags(params: ClaudeParams, config: ClaudeConfig) -> None:
    """Raise PolicyRefused unless every flag of the request is allowed."""
    if params.dangerously_skip_permissions:
        _refuse_bypass("--dangerously-skip-permissions", config)
    check_permission_mode(params.permission_mode, config)
    bypass = permission_bypass(params.extra_args)
    if bypass is not None:
        _refuse_bypass(bypass, config)
    for arg in params.extra_args:
        name = arg.split("=", 1)[0]
        if not arg.startswith("-") or name in PERMISSION_BYPASS_FLAGS:
            continue
        if name not in config.allowed_flags and name != "--permission-mode":
            raise PolicyRefused(
                f"flag {name} is not allowed in extra_args",
                {"rule": "claude.allowed_flags", "flag": name},
            )


def _vet_add_dir(value: str, vetted: Vetted) -> str:
    real = os.path.realpath(os.path.join(vetted.cwd or os.getcwd(), value))
    roots = vetted.roots
    if roots is None:
        if real == "/":
            raise PolicyRefused(
                f"{ADD_DIR} {value!r} is the whole file system; only a cwd root of / allows it",
                {"rule": "cwd_roots", "flag": ADD_DIR, "value": value, "roots": []},
            )
    elif not inside(real, roots):
        raise PolicyRefused(
            f"{ADD_DIR} {value!r} resolves to {real}, outside the allowed roots {', '.join(roots)}",
            {"rule": vetted.roots_rule, "flag": ADD_DIR, "value": value, "roots": list(roots)},
        )
    return real


def _vet_mcp_config(value: str, config: ClaudeConfig) -> str:
    if value not in config.mcp_configs:
        listed = ", ".join(config.mcp_configs) or "none are listed"
        raise PolicyRefused(
            f"{MCP_CONFIG} may name only the MCP configs the operator listed ({listed}); "
            f"got {value!r}",
            {
                "rule": "claude.mcp_configs",
                "flag": MCP_CONFIG,
                "value": value,
                "allowed": list(config.mcp_configs),
            },
        )
    return value


def vet_path_flags(params: ClaudeParams, config: ClaudeConfig, vetted: Vetted) -> tuple[str, ...]:
    """`params.extra_args` with every path-flag value checked, and --add-dir's resolved.

    Raises:
        PolicyRefused: a value outside what the policy allows (see the module docstring).
    """
    result: list[str] = []
    flag: str | None = None  # the flag a plain argument is a value of

    def vet(name: str, value: str) -> str:
        return _vet_add_dir(value, vetted) if name == ADD_DIR else _vet_mcp_config(value, config)

    for arg in params.extra_args:
        if arg.startswith("-") and arg != "-":
            flag, has_value, value = arg.partition("=")
            if has_value and flag in (ADD_DIR, MCP_CONFIG):
                arg = f"{flag}={vet(flag, value)}"
        elif flag in (ADD_DIR, MCP_CONFIG):
            arg = vet(flag, arg)
        result.append(arg)
    return tuple(result)


# -- environment -----------------------------------------------------------------------------


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
        for name, value in child_environment(daemon.config, request_env, claude=True).items()
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


# -- the door --------------------------------------------------------------------------------


def vet_claude(
    daemon: Daemon,
    params: ClaudeParams,
    identity: str,
    run_id: str,
    stdin: Literal["null", "pipe"],
) -> SpawnSpec:
    """The spec that runs a `claude` request for `identity`, exactly as checked.

    Raises:
        InvalidParams: a reserved variable.
        PolicyRefused: a flag, a path, a variable or a command rule refuses the request.
        SpawnFailed: the API key the configuration names is missing.
    """
    config = daemon.config.claude
    check_flags(params, config)
    env = claude_environment(daemon, params.env)
    argv = build_argv(config.binary, params)
    # The command rules, cwd roots, rlimits and output limit hold as for `execute`.
    vetted = daemon.policy.vet_argv(argv, params.cwd, params.env, check_allow=False, env=env)
    extra_args = vet_path_flags(params, config, vetted)
    if extra_args != params.extra_args:
        argv = build_argv(config.binary, attrs.evolve(params, extra_args=extra_args))
        vetted = attrs.evolve(vetted, argv=argv)
    return daemon.policy.spec(vetted, identity, run_id, stdin)
