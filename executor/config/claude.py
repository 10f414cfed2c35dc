"""Configuration of the Claude Code profile: the binary, API access, sandbox, watchdog, grace.

Kept apart from claude.py so that config.py can hold a ClaudeConfig without importing the
daemon.  Like the rest of the configuration it is frozen and built once, from ``CCX_CLAUDE_*``
variables over the defaults.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

IdleAction = Literal["report", "interrupt", "cancel"]
BusySession = Literal["refuse", "queue"]

# Flags a client may pass in `extra_args` unless the operator says otherwise.  Flags the
# profile sets itself (-p, --output-format, --input-format, --verbose, --resume...) are not
# here: they have fields of their own.  The permission-bypass flags are governed by the
# sandbox rule, never by this list.
DEFAULT_ALLOWED_FLAGS: tuple[str, ...] = (
    "--append-system-prompt",
    "--system-prompt",
    "--add-dir",  # only directories inside the cwd roots (claude/policy.py)
    "--fallback-model",
    "--effort",
    "--max-budget-usd",
    "--json-schema",
    "--tools",
    "--strict-mcp-config",
    "--mcp-config",  # only naming a file of claude.mcp_configs (claude/policy.py)
    "--setting-sources",
    "--no-session-persistence",
    "--replay-user-messages",
    "--include-hook-events",
    "--exclude-dynamic-system-prompt-sections",
    "--betas",
    "--name",
)


# Flags that bypass the CLI's permission checks: allowed only on a sandboxed daemon.
PERMISSION_BYPASS_FLAGS = frozenset(
    {"--dangerously-skip-permissions", "--allow-dangerously-skip-permissions"}
)

# Flags whose value can switch the permission checks off: a settings file or JSON can set
# `permissions.defaultMode: "bypassPermissions"`, allow every tool, or add hooks and an
# apiKeyHelper that run commands.  Checking such a value is checking a moving format, so on a
# daemon not sandboxed they are refused outright, even when claude.allowed_flags lists them.
BYPASS_CAPABLE_FLAGS = frozenset({"--settings"})


def permission_bypass(args: Sequence[str]) -> str | None:
    """The first of `args` that bypasses permission checks, or may (as a flag name), if any."""
    previous = ""
    for arg in args:
        name, _, value = arg.partition("=")
        if name in PERMISSION_BYPASS_FLAGS or name in BYPASS_CAPABLE_FLAGS:
            return name
        if (name == "--permission-mode" and value == "bypassPermissions") or (
            previous == "--permission-mode" and arg == "bypassPermissions"
        ):
            return "--permission-mode bypassPermissions"
        previous = arg
    return None


def _config_error(message: str) -> ValueError:
    """The daemon's ConfigError (so `ccx serve` reports it like any other bad setting)."""
    # config.py imports this module for ClaudeConfig; by the time anything is raised, it is
    # fully imported.
    from cc_executor.executor.config.server import ConfigError

    return ConfigError(message)


@attrs.frozen
class ClaudeConfig:
    """How the daemon runs Claude Code.

    Attributes:
        binary: the CLI to run (looked up on the child's PATH unless it contains '/').
        base_url: ANTHROPIC_BASE_URL for every run; None leaves it unset.
        api_key_env: the daemon's environment variable whose value is passed to runs as
            ANTHROPIC_API_KEY; None passes no key (the CLI's own login is used).
        env: fixed variables for every run (e.g. DISABLE_TELEMETRY=1), set by the operator.
        sandboxed: the daemon runs in a sandbox: runs get IS_SANDBOX=1 and may skip
            permission checks; otherwise such requests are refused.
        idle_timeout: the watchdog: seconds without stream-json output before `idle_action`
            (None: no watchdog).  A request may choose its own.
        idle_action: report (tell the client), interrupt (SIGINT: the CLI ends with a result;
            a second idle period escalates to cancel) or cancel (the ladder).
        post_result_grace: seconds a run may live on after its `result` line before it is
            ended through the ladder.
        interrupt_grace: seconds between SIGINT and SIGTERM on a Claude run's cancel ladder.
        timeout: default absolute time limit of a run (None: none).
        busy_session: a second run for a Claude session that has one running is refused or
            queued until the first ends.
        allowed_flags: flags a client may put in `extra_args`.
        mcp_configs: the only files an `--mcp-config` in `extra_args` may name (absolute
            paths, compared as written): an MCP config can start any stdio command.
        max_line_bytes: stream-json lines longer than this are not parsed (the raw bytes
            still reach the client).
        max_prompt_bytes: a longer prompt is refused (it travels as one argv string).
    """

    binary: str = "claude"
    base_url: str | None = None
    api_key_env: str | None = None
    env: Mapping[str, str] = attrs.field(factory=dict)
    sandboxed: bool = False
    idle_timeout: float | None = 600.0
    idle_action: IdleAction = "cancel"
    post_result_grace: float = 5.0
    interrupt_grace: float = 5.0
    timeout: float | None = None
    busy_session: BusySession = "refuse"
    allowed_flags: tuple[str, ...] = DEFAULT_ALLOWED_FLAGS
    mcp_configs: tuple[str, ...] = ()
    max_line_bytes: int = 16 * 1024 * 1024
    # Linux refuses a single argv string of 128 KiB or more (MAX_ARG_STRLEN).
    max_prompt_bytes: int = 128 * 1024 - 1

    def __attrs_post_init__(self) -> None:
        for name in ("post_result_grace", "interrupt_grace"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise _config_error(f"claude.{name} must be >= 0 seconds (got {value})")
        for name in ("idle_timeout", "timeout"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise _config_error(f"claude.{name} must be positive (got {value})")
        if self.idle_action not in ("report", "interrupt", "cancel"):
            raise _config_error("claude.idle_action must be report, interrupt or cancel")
        if self.busy_session not in ("refuse", "queue"):
            raise _config_error("claude.busy_session must be refuse or queue")
        if self.max_line_bytes <= 0 or self.max_prompt_bytes <= 0:
            raise _config_error("claude.max_line_bytes and max_prompt_bytes must be positive")
        for path in self.mcp_configs:
            if not path.startswith("/"):
                raise _config_error(f"claude.mcp_configs: {path!r} is not an absolute path")


def _float(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _config_error(f"{name}={raw!r} is not a number") from None
    return None if value == 0 else value  # 0 switches a limit off


def _env_pairs(raw: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _config_error(f"CCX_CLAUDE_ENV: {item!r} is not NAME=VALUE")
        pairs[name] = value
    return pairs


def claude_config_from_env(env: Mapping[str, str] | None = None) -> ClaudeConfig:
    """Build the profile's configuration from ``CCX_CLAUDE_*`` over the defaults."""
    env = os.environ if env is None else env
    base = ClaudeConfig()
    sandboxed = env.get("CCX_CLAUDE_SANDBOXED", "0").lower()
    if sandboxed not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise _config_error(f"CCX_CLAUDE_SANDBOXED={sandboxed!r} is not a boolean")
    idle_action = env.get("CCX_CLAUDE_IDLE_ACTION", base.idle_action)
    busy = env.get("CCX_CLAUDE_BUSY_SESSION", base.busy_session)
    if idle_action not in ("report", "interrupt", "cancel"):
        raise _config_error(f"CCX_CLAUDE_IDLE_ACTION={idle_action!r}: report|interrupt|cancel")
    if busy not in ("refuse", "queue"):
        raise _config_error(f"CCX_CLAUDE_BUSY_SESSION={busy!r}: use refuse or queue")
    flags = env.get("CCX_CLAUDE_ALLOWED_FLAGS")
    mcp_configs = env.get("CCX_CLAUDE_MCP_CONFIGS")
    return ClaudeConfig(
        binary=env.get("CCX_CLAUDE_BINARY", base.binary),
        base_url=env.get("CCX_CLAUDE_BASE_URL", base.base_url),
        api_key_env=env.get("CCX_CLAUDE_API_KEY_ENV", base.api_key_env),
        env=_env_pairs(env.get("CCX_CLAUDE_ENV", "")),
        sandboxed=sandboxed in ("1", "true", "yes", "on"),
        idle_timeout=_float(env, "CCX_CLAUDE_IDLE_TIMEOUT", base.idle_timeout),
        idle_action="report"
        if idle_action == "report"
        else "interrupt"
        if idle_action == "interrupt"
        else "cancel",
        post_result_grace=_float(env, "CCX_CLAUDE_POST_RESULT_GRACE", base.post_result_grace)
        or 0.0,
        interrupt_grace=_float(env, "CCX_CLAUDE_INTERRUPT_GRACE", base.interrupt_grace) or 0.0,
        timeout=_float(env, "CCX_CLAUDE_TIMEOUT", base.timeout),
        busy_session="queue" if busy == "queue" else "refuse",
        allowed_flags=tuple(f for f in flags.split(",") if f)
        if flags is not None
        else base.allowed_flags,
        mcp_configs=tuple(f for f in mcp_configs.split(",") if f)
        if mcp_configs is not None
        else base.mcp_configs,
    )
