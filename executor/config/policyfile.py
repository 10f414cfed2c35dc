r"""The policy file: the daemon's whole policy in one TOML file (``--policy`` / ``CCX_POLICY``).

It is read once at start with the standard library's ``tomllib`` and checked completely: every
table and key must be known and of the right type, and each mistake is reported as
``FILE: KEY: what is wrong; expected what`` (``PolicyFileError``).  The result is a frozen
``Policy`` plus the few settings the file shares with flags and ``CCX_*`` variables
(``allow_shell``, ``sandboxed``, ``[env] pass``, ``[claude] mcp_configs``), which config.py
layers under them: flag > environment > policy file > default.

Layout (every key optional; see docs/operations.md for a full example)::

    sandboxed = false                 # the Claude sandbox rule (config/claude.py)
    allow_shell = false
    unlisted_commands = "refuse"      # with a [commands] table: "refuse" or "allow"
    cwd_roots = ["/srv/work"]         # a run's cwd must resolve inside one of them

    [commands.claude]                 # matched on the resolved executable
    allowed = true
    cwd_roots = ["/srv/repos"]        # instead of the top-level roots
    flags.allow = ["-p", "--model"]   # only these flags
    flags.require = ["-p"]
    flags.forbid = ["--mcp-config"]

    [env]
    pass = ["PATH", "HOME", "LANG"]   # from the daemon's environment
    request_allow = ["GIT_*", "MY_APP_*"]   # names a request may set (globs)
    startup_allow = ["LD_LIBRARY_PATH"]     # start-up variables a request may set (names)

    [claude]
    mcp_configs = ["/etc/ccx/mcp.json"]     # the only files --mcp-config may name
    [[claude.permission_rules]]       # decide a session's permission requests (first match)
    name = "no-rm-root"
    tool = "Bash"                     # a glob on the tool name
    input_pattern = 'rm\s+-rf\s+/'    # a regex: on `command` for Bash, else the input's JSON
    behavior = "deny"                 # or "allow"
    message = "not on this host"

    [limits]                          # per client identity
    concurrent_runs = 4
    starts_per_minute = 30
    max_output_bytes = 1073741824
    [limits.identity.ci]              # overrides for one identity
    concurrent_runs = 16

    [resources]                       # rlimits of every run
    cpu_seconds = 3600
    address_space_bytes = 8589934592
    open_files = 1024
    processes = 512
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from cc_executor.executor.config.claude import PermissionRule
from cc_executor.executor.config.startup import is_startup_variable
from cc_executor.supervision.files import read_text
from cc_executor.supervision.spawn import ResourceLimits

UnlistedCommands = Literal["refuse", "allow"]


class PolicyFileError(ValueError):
    """The policy file cannot be used; the message names the file, the key and the fix."""


@attrs.frozen
class FlagRules:
    """Flag rules of one command: names as written (``--model``; ``--model=x`` matches too).

    Attributes:
        allow: when set, every flag must be one of these.
        require: each of these must be present.
        forbid: none of these may be present.
    """

    allow: tuple[str, ...] | None = None
    require: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()


@attrs.frozen
class CommandRule:
    """What the policy says about one command (``[commands.<name>]``)."""

    name: str
    allowed: bool = True
    flags: FlagRules = attrs.field(factory=FlagRules)
    cwd_roots: tuple[str, ...] | None = None  # None: the policy's top-level roots


@attrs.frozen
class LimitSet:
    """Per-identity limits; None: no limit."""

    concurrent_runs: int | None = None
    starts_per_minute: int | None = None
    max_output_bytes: int | None = None


@attrs.frozen
class Limits:
    """Defaults for every identity, and overrides for some."""

    default: LimitSet = attrs.field(factory=LimitSet)
    identities: Mapping[str, LimitSet] = attrs.field(factory=dict)

    def for_identity(self, name: str) -> LimitSet:
        """The defaults, with the identity's own settings over them."""
        override = self.identities.get(name)
        if override is None:
            return self.default
        changes = {k: v for k, v in attrs.asdict(override).items() if v is not None}
        return attrs.evolve(self.default, **changes)


@attrs.frozen
class Policy:
    """Everything the policy file can say beyond the settings shared with flags."""

    commands: Mapping[str, CommandRule] | None = None  # None: no [commands] table
    unlisted_commands: UnlistedCommands = "refuse"
    cwd_roots: tuple[str, ...] | None = None  # None: anywhere
    request_env: tuple[str, ...] | None = None  # globs; None: any name not reserved
    # Start-up variables (runs/environment.py) a request may set anyway, by exact name.
    startup_env: tuple[str, ...] = ()
    limits: Limits = attrs.field(factory=Limits)
    resources: ResourceLimits = attrs.field(factory=ResourceLimits)


@attrs.frozen
class PolicyFile:
    """A parsed policy file: the policy, and the settings it shares with flags (None: unset)."""

    path: str
    policy: Policy
    allow_shell: bool | None = None
    sandboxed: bool | None = None
    pass_env: tuple[str, ...] | None = None
    mcp_configs: tuple[str, ...] | None = None
    permission_rules: tuple[PermissionRule, ...] = ()


# -- reading ---------------------------------------------------------------------------------

_TOP_KEYS = (
    "sandboxed",
    "allow_shell",
    "unlisted_commands",
    "cwd_roots",
    "commands",
    "env",
    "limits",
    "resources",
    "claude",
)
_COMMAND_KEYS = ("allowed", "flags", "cwd_roots")
_FLAG_KEYS = ("allow", "require", "forbid")
_ENV_KEYS = ("pass", "request_allow", "startup_allow")
_CLAUDE_KEYS = ("mcp_configs", "permission_rules")
_RULE_KEYS = ("name", "tool", "input_pattern", "behavior", "message")
_LIMIT_KEYS = ("concurrent_runs", "starts_per_minute", "max_output_bytes")
_RESOURCE_KEYS = ("cpu_seconds", "address_space_bytes", "open_files", "processes")


def _describe(value: object) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kind_of = kind.get(type(value), "a table" if isinstance(value, dict) else "an array")
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{shown} ({kind_of})"


class _Reader:
    """Typed access to the parsed TOML, with errors that say file, key and expectation."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, key: str, problem: str, expected: str) -> PolicyFileError:
        return PolicyFileError(f"{self.path}: {key}: {problem}; expected {expected}")

    def table(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"got {_describe(value)}", "a table")
        return value

    def known(self, table: Mapping[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
        for name in table:
            if name not in keys:
                raise self.error(f"{prefix}{name}", "unknown key", "one of " + ", ".join(keys))

    def bool(self, table: Mapping[str, Any], key: str, full: str) -> bool | None:
        value = table.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.error(full, f"got {_describe(value)}", "true or false")
        return value

    def positive(self, table: Mapping[str, Any], key: str, full: str) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error(full, f"got {_describe(value)}", "a positive integer")
        return value

    def strings(self, table: Mapping[str, Any], key: str, full: str) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(full, f"got {_describe(value)}", "an array of non-empty strings")
        return tuple(value)

    def absolute(
        self, table: Mapping[str, Any], key: str, full: str, what: str
    ) -> tuple[str, ...] | None:
        paths = self.strings(table, key, full)
        for path in paths or ():
            if not path.startswith("/"):
                raise self.error(full, f"{path!r} is relative", what)
        return paths

    def roots(self, table: Mapping[str, Any], key: str, full: str) -> tuple[str, ...] | None:
        return self.absolute(table, key, full, "absolute directories")


def _command(reader: _Reader, name: str, value: object) -> CommandRule:
    prefix = f"commands.{name}"
    table = reader.table(value, prefix)
    reader.known(table, prefix + ".", _COMMAND_KEYS)
    flags_table = reader.table(table.get("flags", {}), prefix + ".flags")
    reader.known(flags_table, prefix + ".flags.", _FLAG_KEYS)
    flags = FlagRules(
        allow=reader.strings(flags_table, "allow", prefix + ".flags.allow"),
        require=reader.strings(flags_table, "require", prefix + ".flags.require") or (),
        forbid=reader.strings(flags_table, "forbid", prefix + ".flags.forbid") or (),
    )
    for flag in (*(flags.allow or ()), *flags.require, *flags.forbid):
        if not flag.startswith("-") or "=" in flag:
            raise reader.error(
                prefix + ".flags", f"{flag!r} is not a flag name", "names like -p or --model"
            )
    allowed = reader.bool(table, "allowed", prefix + ".allowed")
    return CommandRule(
        name=name,
        allowed=True if allowed is None else allowed,
        flags=flags,
        cwd_roots=reader.roots(table, "cwd_roots", prefix + ".cwd_roots"),
    )


def _limit_set(reader: _Reader, table: Mapping[str, Any], prefix: str) -> LimitSet:
    return LimitSet(**{key: reader.positive(table, key, prefix + key) for key in _LIMIT_KEYS})


def _limits(reader: _Reader, value: object) -> Limits:
    table = reader.table(value, "limits")
    reader.known(table, "limits.", (*_LIMIT_KEYS, "identity"))
    identities: dict[str, LimitSet] = {}
    for name, entry in reader.table(table.get("identity", {}), "limits.identity").items():
        prefix = f"limits.identity.{name}."
        entry_table = reader.table(entry, prefix[:-1])
        reader.known(entry_table, prefix, _LIMIT_KEYS)
        identities[name] = _limit_set(reader, entry_table, prefix)
    return Limits(default=_limit_set(reader, table, "limits."), identities=identities)


def _resources(reader: _Reader, value: object) -> ResourceLimits:
    table = reader.table(value, "resources")
    reader.known(table, "resources.", _RESOURCE_KEYS)
    return ResourceLimits(
        **{key: reader.positive(table, key, "resources." + key) for key in _RESOURCE_KEYS}
    )


def _startup_allow(reader: _Reader, env: Mapping[str, Any]) -> tuple[str, ...]:
    names = reader.strings(env, "startup_allow", "env.startup_allow") or ()
    for name in names:
        if any(c in name for c in "*?["):
            raise reader.error(
                "env.startup_allow", f"{name!r} is a pattern", "exact names (each one allowed)"
            )
        if not is_startup_variable(name, claude=True):
            raise reader.error(
                "env.startup_allow",
                f"{name!r} is not a start-up variable (any request may set it)",
                "names such as LD_LIBRARY_PATH or PYTHONPATH",
            )
    return names


def _permission_rules(reader: _Reader, value: object) -> tuple[PermissionRule, ...]:
    if not isinstance(value, list):
        raise reader.error("claude.permission_rules", f"got {_describe(value)}", "[[tables]]")
    rules = []
    for i, raw in enumerate(value):
        where = f"claude.permission_rules[{i}]"
        table = reader.table(raw, where)
        reader.known(table, f"{where}.", _RULE_KEYS)
        for key in _RULE_KEYS:
            if key in table and not isinstance(table[key], str):
                raise reader.error(f"{where}.{key}", f"got {_describe(table[key])}", "a string")
        for key in ("name", "tool", "behavior"):
            if key not in table:
                raise reader.error(f"{where}.{key}", "missing", "a string")
        if table["behavior"] not in ("allow", "deny"):
            raise reader.error(
                f"{where}.behavior", f"got {table['behavior']!r}", '"allow" or "deny"'
            )
        try:
            rules.append(PermissionRule(**table))
        except ValueError as exc:
            raise PolicyFileError(f"{reader.path}: {where}: {exc}") from None
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise reader.error("claude.permission_rules", "two rules share a name", "unique names")
    return tuple(rules)


def parse_policy(text: str, path: str) -> PolicyFile:
    """Parse and check a policy file's text.

    Raises:
        PolicyFileError: the text is not TOML, or a key is unknown or has a wrong value.
    """
    reader = _Reader(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{path}: not valid TOML: {exc}") from None
    reader.known(data, "", _TOP_KEYS)
    unlisted = data.get("unlisted_commands", "refuse")
    if unlisted not in ("refuse", "allow"):
        raise reader.error("unlisted_commands", f"got {_describe(unlisted)}", '"refuse" or "allow"')
    commands: dict[str, CommandRule] | None = None
    if "commands" in data:
        commands = {
            name: _command(reader, name, value)
            for name, value in reader.table(data["commands"], "commands").items()
        }
    env = reader.table(data.get("env", {}), "env")
    reader.known(env, "env.", _ENV_KEYS)
    claude = reader.table(data.get("claude", {}), "claude")
    reader.known(claude, "claude.", _CLAUDE_KEYS)
    policy = Policy(
        commands=commands,
        unlisted_commands="allow" if unlisted == "allow" else "refuse",
        cwd_roots=reader.roots(data, "cwd_roots", "cwd_roots"),
        request_env=reader.strings(env, "request_allow", "env.request_allow"),
        startup_env=_startup_allow(reader, env),
        limits=_limits(reader, data.get("limits", {})),
        resources=_resources(reader, data.get("resources", {})),
    )
    return PolicyFile(
        path=path,
        policy=policy,
        allow_shell=reader.bool(data, "allow_shell", "allow_shell"),
        sandboxed=reader.bool(data, "sandboxed", "sandboxed"),
        pass_env=reader.strings(env, "pass", "env.pass"),
        mcp_configs=reader.absolute(
            claude, "mcp_configs", "claude.mcp_configs", "absolute file names"
        ),
        permission_rules=_permission_rules(reader, claude.get("permission_rules", [])),
    )


def load_policy(path: str) -> PolicyFile:
    """Read and check the policy file at `path`.

    Raises:
        PolicyFileError: it cannot be read, or `parse_policy` refuses it.
    """
    try:
        text = read_text(path)  # a FIFO or device there is refused, never waited on
    except OSError as exc:
        raise PolicyFileError(f"cannot read the policy file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PolicyFileError(f"{path}: not UTF-8 text") from None
    return parse_policy(text, path)
