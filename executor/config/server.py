"""Daemon configuration: every number the executor uses, from flags, environment and defaults.

Precedence is flag > environment (``CCX_*``) > policy file (``--policy``/``CCX_POLICY``,
policyfile.py) > default.  The object is frozen and built once at start; nothing reads the
environment after that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

import attrs

from cc_executor.executor.config.claude import ClaudeConfig, claude_config_from_env
from cc_executor.executor.config.mcp import McpConfig
from cc_executor.executor.config.policyfile import Policy, PolicyFileError, load_policy
from cc_executor.executor.config.transport import TransportConfig
from cc_executor.executor.transport.auth import TokenError, is_loopback, load_tokens
from cc_executor.executor.transport.frontdoor import Identity
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.journal import JournalConfig
from cc_executor.supervision.spawn import find_prlimit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8003

# Variables a child inherits from the daemon unless configured otherwise.  Everything else in the
# daemon's environment (tokens, API keys, CCX_* settings, CLAUDECODE markers) stays behind.
DEFAULT_PASS_ENV: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "TMPDIR",
)
# A glob in the pass-list (`--pass-env '*'`) never matches these: the daemon's own settings
# (tokens among them) and the markers a parent agent sets for its own children -- the names a
# request may not set either (runs/environment.py refuses them).
RESERVED_ENV_PREFIXES: tuple[str, ...] = ("CCX_", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")


def default_state_dir(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/cc-executor``, else ``~/.local/state/cc-executor``."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "cc-executor")


def default_instance() -> str:
    """The host name: on a StatefulSet, the pod's stable name (``ccx-0``)."""
    return os.uname().nodename


@attrs.frozen
class ServerConfig:
    """Everything the daemon needs to know; see ``ccx serve --help`` for the meaning of each."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    paths: tuple[str, ...] = ("/", "/ws/mcp")
    max_connections: int = 1024
    max_runs_per_connection: int = 16
    max_runs: int = 1024
    max_message_bytes: int = 8 * 1024 * 1024
    # Output whose JSON would exceed this is sent base64-encoded instead (never above 4/3 of the
    # chunk), so clients with a 1 MiB frame limit (trio-websocket, websockets) always cope.
    max_frame_bytes: int = 1024 * 1024
    # A run started by a client that takes binary output frames reads its pipes this much at a
    # time instead of supervision.read_size: a binary frame waiting for the socket is the frame
    # itself, not its JSON encodings, so twice the read fits in less memory per stalled stream.
    binary_stream_buffer: int = 256 * 1024
    receive_buffer_bytes: int = 64 * 1024
    control_queue: int = 16
    completed_runs_kept: int = 64
    allowed_commands: tuple[str, ...] | None = None
    allow_shell: bool = False
    pass_env: tuple[str, ...] = DEFAULT_PASS_ENV
    # The daemon's working directory, and so a run's unless it asks for one; None: where the
    # daemon was started (the original ran every command in its own checkout).
    cwd: str | None = None
    shutdown_grace: float = 10.0
    connect_timeout: float = 10.0
    log_level: str = "info"
    supervision: SupervisionConfig = attrs.field(factory=SupervisionConfig)
    # Durable runs: journals live in <state_dir>/journals.  A completed run's journal is
    # compacted (its events removed, its completion kept) after retention_seconds, or sooner,
    # oldest first, while completed journals hold more than retention_bytes in all.
    state_dir: str = attrs.field(factory=default_state_dir)
    journal: JournalConfig = attrs.field(factory=JournalConfig)
    retention_seconds: float = 7 * 24 * 3600.0
    retention_bytes: int = 10 * 1024 * 1024 * 1024
    claude: ClaudeConfig = attrs.field(factory=ClaudeConfig)
    # Who may connect: token -> identity (see auth.py).  None: no authentication, which is
    # allowed only on loopback unless insecure_listen forces it.
    tokens: Mapping[str, Identity] | None = None
    token_file: str | None = None
    allowed_origins: tuple[str, ...] = ()
    insecure_listen: bool = False
    # The policy file's rules (commands, cwd roots, request env, per-identity limits, rlimits).
    policy: Policy = attrs.field(factory=Policy)
    policy_file: str | None = None
    # Names this daemon in durable run ids (``<instance>-<random>``), so a client or proxy can
    # route `attach` to the instance that holds the run.
    instance: str = attrs.field(factory=default_instance)
    # The MCP endpoint (WebSocket subprotocol "mcp"): progress, output bounds, tasks.
    mcp: McpConfig = attrs.field(factory=McpConfig)
    # Connections and the listener: the inbound queue, the close bound, accept retries.
    transport: TransportConfig = attrs.field(factory=TransportConfig)


class ConfigError(ValueError):
    """A setting is malformed; the message names it."""


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def _env_list(env: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    raw = env.get(name)
    if raw is None:
        return None
    return tuple(item for item in raw.split(",") if item)


def with_policy_file(config: ServerConfig, path: str) -> ServerConfig:
    """`config` with the policy file at `path` over it."""
    try:
        loaded = load_policy(path)
    except PolicyFileError as exc:
        raise ConfigError(str(exc)) from None
    claude = config.claude
    if loaded.sandboxed is not None:
        claude = attrs.evolve(claude, sandboxed=loaded.sandboxed)
    if loaded.mcp_configs is not None:
        claude = attrs.evolve(claude, mcp_configs=loaded.mcp_configs)
    claude = attrs.evolve(claude, permission_rules=loaded.permission_rules)
    return attrs.evolve(
        config,
        policy=loaded.policy,
        policy_file=path,
        allow_shell=config.allow_shell if loaded.allow_shell is None else loaded.allow_shell,
        pass_env=config.pass_env if loaded.pass_env is None else loaded.pass_env,
        claude=claude,
    )


def config_from_env(
    env: Mapping[str, str] | None = None, *, check: bool = True, policy_path: str | None = None
) -> ServerConfig:
    """Build the configuration from ``CCX_*`` variables over the policy file and the defaults.

    The policy file is `policy_path` (the ``--policy`` flag), else ``CCX_POLICY``.
    ``check=False`` leaves validation to the caller, who has more to apply (flags).
    """
    env = os.environ if env is None else env
    base = ServerConfig()
    policy_path = policy_path or env.get("CCX_POLICY") or None
    if policy_path is not None:
        base = with_policy_file(base, policy_path)
    sup = base.supervision
    supervision = attrs.evolve(
        sup,
        term_grace=_env_float(env, "CCX_TERM_GRACE", sup.term_grace),
        control_timeout=_env_float(env, "CCX_CONTROL_TIMEOUT", sup.control_timeout),
        max_chunk=_env_int(env, "CCX_MAX_CHUNK", sup.max_chunk),
        channel_capacity=_env_int(env, "CCX_CHANNEL_CAPACITY", sup.channel_capacity),
        read_size=_env_int(env, "CCX_STREAM_BUFFER", sup.read_size),
    )
    journal = base.journal
    policy = env.get("CCX_JOURNAL_QUOTA_POLICY", journal.quota_policy)
    fsync = env.get("CCX_JOURNAL_FSYNC", journal.fsync)
    if policy not in ("block", "gap"):
        raise ConfigError(f"CCX_JOURNAL_QUOTA_POLICY={policy!r}: use block or gap")
    if fsync not in ("never", "completion", "always"):
        raise ConfigError(f"CCX_JOURNAL_FSYNC={fsync!r}: use never, completion or always")
    on_error = env.get("CCX_JOURNAL_ERROR_POLICY", journal.error_policy)
    if on_error not in ("block", "cancel"):
        raise ConfigError(f"CCX_JOURNAL_ERROR_POLICY={on_error!r}: use block or cancel")
    journal = attrs.evolve(
        journal,
        quota_bytes=_env_int(env, "CCX_JOURNAL_QUOTA_BYTES", journal.quota_bytes),
        quota_policy="gap" if policy == "gap" else "block",
        fsync="never" if fsync == "never" else "always" if fsync == "always" else "completion",
        error_policy="cancel" if on_error == "cancel" else "block",
    )
    transport = attrs.evolve(
        base.transport,
        ping_interval=_env_float(env, "CCX_PING_INTERVAL", base.transport.ping_interval),
        ping_timeout=_env_float(env, "CCX_PING_TIMEOUT", base.transport.ping_timeout),
    )
    config = attrs.evolve(
        base,
        transport=transport,
        host=env.get("CCX_HOST", base.host),
        port=_env_int(env, "CCX_PORT", base.port),
        max_connections=_env_int(env, "CCX_MAX_CONNECTIONS", base.max_connections),
        max_runs_per_connection=_env_int(
            env, "CCX_MAX_RUNS_PER_CONNECTION", base.max_runs_per_connection
        ),
        max_runs=_env_int(env, "CCX_MAX_RUNS", base.max_runs),
        max_message_bytes=_env_int(env, "CCX_MAX_MESSAGE_BYTES", base.max_message_bytes),
        allowed_commands=(
            _env_list(env, "CCX_ALLOW") if "CCX_ALLOW" in env else base.allowed_commands
        ),
        allow_shell=_env_bool(env, "CCX_ALLOW_SHELL", base.allow_shell),
        pass_env=_env_list(env, "CCX_PASS_ENV") or base.pass_env,
        cwd=env.get("CCX_CWD") or base.cwd,
        shutdown_grace=_env_float(env, "CCX_SHUTDOWN_GRACE", base.shutdown_grace),
        log_level=env.get("CCX_LOG_LEVEL", base.log_level),
        supervision=supervision,
        state_dir=env.get("CCX_STATE_DIR") or default_state_dir(env),
        journal=journal,
        retention_seconds=_env_float(env, "CCX_RETENTION_SECONDS", base.retention_seconds),
        retention_bytes=_env_int(env, "CCX_RETENTION_BYTES", base.retention_bytes),
        claude=_claude_config(env, base),
        token_file=env.get("CCX_TOKEN_FILE") or None,
        allowed_origins=_env_list(env, "CCX_ALLOW_ORIGIN") or (),
        insecure_listen=_env_bool(env, "CCX_INSECURE_LISTEN", base.insecure_listen),
        instance=env.get("CCX_INSTANCE") or base.instance,
        binary_stream_buffer=_env_int(env, "CCX_BINARY_STREAM_BUFFER", base.binary_stream_buffer),
    )
    if check:
        config = with_pass_env_expanded(with_tokens(config, env), env)
        validate(config)
    return config


def _claude_config(env: Mapping[str, str], base: ServerConfig) -> ClaudeConfig:
    claude = claude_config_from_env(env)
    if "CCX_CLAUDE_SANDBOXED" not in env:  # the policy file's `sandboxed`, if any
        claude = attrs.evolve(claude, sandboxed=base.claude.sandboxed)
    if "CCX_CLAUDE_MCP_CONFIGS" not in env:  # the policy file's [claude] mcp_configs, if any
        claude = attrs.evolve(claude, mcp_configs=base.claude.mcp_configs)
    # The policy file's permission rules have no variable: they always come from the file.
    return attrs.evolve(claude, permission_rules=base.claude.permission_rules)


def with_tokens(config: ServerConfig, env: Mapping[str, str]) -> ServerConfig:
    """Load the tokens of ``config.token_file`` and ``CCX_TOKENS``."""
    try:
        return attrs.evolve(config, tokens=load_tokens(env, config.token_file))
    except TokenError as exc:
        raise ConfigError(str(exc)) from None


def with_pass_env_expanded(config: ServerConfig, env: Mapping[str, str]) -> ServerConfig:
    """The pass-list with each glob (``*``, ``LC_*``) replaced by the names in `env` it matches,
    reserved names left out; plain names stay as given."""
    names: list[str] = []
    for entry in config.pass_env:
        if not any(c in entry for c in "*?["):
            names.append(entry)
            continue
        names.extend(
            sorted(
                name
                for name in env
                if fnmatchcase(name, entry) and not name.startswith(RESERVED_ENV_PREFIXES)
            )
        )
    return attrs.evolve(config, pass_env=tuple(dict.fromkeys(names)))


def validate(config: ServerConfig) -> None:
    """Refuse settings that cannot work, naming the setting."""
    positive_ints: Sequence[tuple[str, int]] = (
        ("max_connections", config.max_connections),
        ("max_runs_per_connection", config.max_runs_per_connection),
        ("max_runs", config.max_runs),
        ("max_message_bytes", config.max_message_bytes),
        ("max_frame_bytes", config.max_frame_bytes),
        ("control_queue", config.control_queue),
        ("supervision.max_chunk", config.supervision.max_chunk),
        ("supervision.channel_capacity", config.supervision.channel_capacity),
        ("stream buffer (supervision.read_size)", config.supervision.read_size),
        ("binary_stream_buffer", config.binary_stream_buffer),
        ("journal.quota_bytes", config.journal.quota_bytes),
    )
    for name, value in positive_ints:
        if value <= 0:
            raise ConfigError(f"{name} must be positive (got {value})")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port must be 0..65535 (got {config.port})")
    if config.retention_seconds < 0 or config.retention_bytes < 0:
        raise ConfigError("retention_seconds and retention_bytes must not be negative")
    # Seconds the daemon waits for with them (a NaN compares false with everything: `not >=`
    # catches it). A negative or NaN grace was taken, and failed at the drain, as a traceback.
    graces: Sequence[tuple[str, float]] = (
        ("shutdown_grace (--shutdown-grace)", config.shutdown_grace),
        ("term_grace (--term-grace)", config.supervision.term_grace),
        ("retention_seconds (--retention-seconds)", config.retention_seconds),
    )
    for name, grace in graces:
        if not grace >= 0:
            raise ConfigError(f"{name} must be a number of seconds, 0 or more (got {grace})")
    if not config.state_dir:
        raise ConfigError("state_dir must not be empty")
    if config.cwd is not None and not os.path.isdir(config.cwd):
        raise ConfigError(f"cwd {config.cwd!r} is not a directory")
    if config.journal.quota_policy not in ("block", "gap"):
        raise ConfigError("journal quota policy must be block or gap")
    if config.journal.fsync not in ("never", "completion", "always"):
        raise ConfigError("journal fsync must be never, completion or always")
    if config.journal.error_policy not in ("block", "cancel"):
        raise ConfigError("journal error policy must be block or cancel")
    if not config.transport.ping_interval >= 0:  # NaN too, as above
        raise ConfigError("ping_interval must be 0 or more seconds (0 sends no pings)")
    if not config.transport.ping_timeout > 0:
        raise ConfigError("ping_timeout must be a positive number of seconds")
    if config.max_frame_bytes < config.supervision.max_chunk * 4 // 3 + 1024:
        raise ConfigError("max_frame_bytes must leave room for a base64-encoded max_chunk")
    if config.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(
            f"log_level must be debug, info, warning or error (got {config.log_level})"
        )
    for path in config.paths:
        if not path.startswith("/"):
            raise ConfigError(f"path {path!r} must start with '/'")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", config.instance):
        raise ConfigError(
            f"instance {config.instance!r} must be at most 200 letters, digits, '.', '_' or "
            "'-' (it becomes part of run ids, which binary output frames carry in 255 bytes)"
        )
    _validate_policy(config)
    if config.tokens is None and not is_loopback(config.host) and not config.insecure_listen:
        raise ConfigError(
            f"refusing to listen on {config.host} without authentication: set tokens "
            "(CCX_TOKENS or --token-file), listen on loopback, or force it with --insecure-listen"
        )


def _validate_policy(config: ServerConfig) -> None:
    """What the policy file could not check alone: prlimit, and identities that exist."""
    policy = config.policy
    where = config.policy_file or "policy"
    if policy.resources.configured and find_prlimit() is None:
        raise ConfigError(
            f"{where}: [resources] needs prlimit (util-linux) on the daemon's PATH to apply "
            "rlimits; install it or remove [resources]"
        )
    if config.tokens is not None:
        known = {identity.name for identity in config.tokens.values()}
        for name in policy.limits.identities:
            if name not in known:
                raise ConfigError(
                    f"{where}: limits.identity.{name}: no token has this identity; "
                    f"expected one of {', '.join(sorted(known))}"
                )
