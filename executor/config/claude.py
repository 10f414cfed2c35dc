"""Configuration of the Claude Code profile: the binary, API access, sandbox, watchdog, grace.

Kept apart from claude.py so that config.py can hold a ClaudeConfig without importing the
daemon.  Like the rest of the configuration it is frozen and built once, from ``CCX_CLAUDE_*``
variables over the defaults.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

IdleAction = Literal["report", "interrupt", "cancel"]
BusySession = Literal["refuse", "queue"]
Behavior = Literal["allow", "deny"]

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
class PermissionRule:
    """An operator's rule deciding a session's permission request without asking anyone.

    `tool` is a glob on the tool name; `input_pattern` a regex searched in the tool's input:
    in its `command` for Bash, else in the input's JSON (None: any input).
    """

    name: str
    tool: str
    behavior: Behavior
    input_pattern: str | None = None
    message: str | None = None
    _compiled: re.Pattern[str] | None = attrs.field(init=False, default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        if not self.name or not self.tool:
            raise _config_error("claude.permission_rules: a rule needs a name and a tool")
        if self.behavior not in ("allow", "deny"):
            raise _config_error(f"claude.permission_rules {self.name}: behavior allow or deny")
        if self.input_pattern is not None:
            try:
                compiled = re.compile(self.input_pattern)
            except re.error as exc:
                raise _config_error(
                    f"claude.permission_rules {self.name}: input_pattern: {exc}"
                ) from None
            object.__setattr__(self, "_compiled", compiled)

    def matches(self, tool: str | None, text: str) -> bool:
        """Whether the rule decides a request for `tool` whose input reads `text`."""
        if tool is None or not fnmatch.fnmatchcase(tool, self.tool):
            return False
        return self._compiled is None or self._compiled.search(text) is not None


def rule_text(tool: str | None, tool_input: Any, as_json: str) -> str:
    """What a rule's `input_pattern` is searched in: a Bash `command`, else the input's JSON."""
    if tool == "Bash" and isinstance(tool_input, dict):
        command = tool_input.get("command")
        if isinstance(command, str):
            return command
    return as_json


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
        close_grace: seconds `claude.close` waits for a session's CLI to exit after stdin
            EOF before the ladder ends it.
        control_timeout: seconds the daemon waits for the CLI's answer to one of its control
            requests (initialize, interrupt, set_model, ...) before the caller gets -32007.
        permission_timeout: seconds a session's permission request waits for an answer
            before `permission_default` decides it.
        permission_default: what an unanswered permission request becomes (deny, with the
            message "no answer within <t> s"; or allow).
        permission_rules: the operator's rules (policy file, ``[[claude.permission_rules]]``)
            that decide permission requests before anyone is asked; the first match wins.
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
    close_grace: float = 10.0
    control_timeout: float = 30.0
    permission_timeout: float = 300.0
    permission_default: Behavior = "deny"
    permission_rules: tuple[PermissionRule, ...] = ()

    def __attrs_post_init__(self) -> None:
        for name in ("close_grace", "control_timeout", "permission_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise _config_error(f"claude.{name} must be positive (got {value})")
        if self.permission_default not in ("allow", "deny"):
            raise _config_error("claude.permission_default must be allow or deny")
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
    default = env.get("CCX_CLAUDE_PERMISSION_DEFAULT", base.permission_default)
    if default not in ("allow", "deny"):
        raise _config_error(f"CCX_CLAUDE_PERMISSION_DEFAULT={default!r}: use allow or deny")
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
        close_grace=_float(env, "CCX_CLAUDE_CLOSE_GRACE", base.close_grace) or base.close_grace,
        control_timeout=_float(env, "CCX_CLAUDE_CONTROL_TIMEOUT", base.control_timeout)
        or base.control_timeout,
        permission_timeout=_float(env, "CCX_CLAUDE_PERMISSION_TIMEOUT", base.permission_timeout)
        or base.permission_timeout,
        permission_default="allow" if default == "allow" else "deny",
    )
