"""What a client may run: command rules, the shell opt-in, cwd roots and the child environment.

Command rules come from ``--allow`` (a bare allow-list) and the policy file's ``[commands.<name>]``
tables (allowed, flag rules, cwd roots; policyfile.py).  They are matched on the resolved argv —
after a command string has been split into words — by the executable it resolves to, so
``/tmp/x/echo`` does not pass as ``echo``.  A command no rule names is refused when there is an
allow-list (``--allow``, or a ``[commands]`` table with ``unlisted_commands = "refuse"``).
Refusals are ``PolicyRefused`` errors that name the rule that refused.

Flags are the arguments that start with ``-`` before a ``--``, compared by name (the part before
any ``=``): ``--model=x`` is ``--model``; a flag's separate value (``--model x``) is not a flag.

The flag rule for Claude Code holds for ``execute`` too: unless the daemon is configured as
sandboxed, argv naming the CLI (``claude``, or the configured binary) may not bypass its
permission checks, and no request may set ``IS_SANDBOX``.  (A shell command line is opaque to
this rule; the shell is opt-in.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from fnmatch import fnmatchcase

import attrs
import structlog

from cc_executor.executor.config.claude import permission_bypass
from cc_executor.executor.config.policyfile import CommandRule
from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.runs.limits import RunLimits
from cc_executor.protocol import ExecuteParams, InvalidParams, PolicyRefused
from cc_executor.supervision import ResourceLimits, SpawnSpec

log = structlog.get_logger()

# Markers a parent agent sets for its own children; a run must never inherit them.
_STRIPPED_PREFIXES = ("CCX_", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")


def _resolve(executable: str, path: str | None) -> str | None:
    found = shutil.which(executable, path=path)
    return os.path.realpath(found) if found else None


def flag_names(args: Sequence[str]) -> Iterator[str]:
    """The names of the flags among `args` (see the module docstring)."""
    for arg in args:
        if arg == "--":
            return
        if arg.startswith("-") and arg != "-":
            yield arg.partition("=")[0]


def _inside(path: str, roots: Sequence[str]) -> bool:
    for root in roots:
        real_root = os.path.realpath(root)
        if path == real_root or path.startswith(real_root.rstrip("/") + "/"):
            return True
    return False


class CommandPolicy:
    """Command rules, the shell rule and cwd roots, resolved once against the daemon's PATH;
    and the per-identity run limits (limits.py)."""

    def __init__(self, config: ServerConfig) -> None:
        policy = config.policy
        self._allow_shell = config.allow_shell
        self._sandboxed = config.claude.sandboxed
        self._claude = _resolve(config.claude.binary, os.environ.get("PATH"))
        self._cwd_roots = policy.cwd_roots
        path = os.environ.get("PATH")
        self._rules: dict[str, CommandRule] = {}
        for name, rule in (policy.commands or {}).items():
            resolved = _resolve(name, path)
            if resolved is None:
                log.warning("policy.command_not_found", command=name)
                continue
            self._rules[resolved] = rule
        for entry in config.allowed_commands or ():
            resolved = _resolve(entry, path)
            if resolved is not None:
                self._rules.setdefault(resolved, CommandRule(entry))
        # Which rule refuses a command nobody listed (None: unlisted commands may run).
        self._unlisted_rule: str | None = None
        if config.allowed_commands is not None:
            self._unlisted_rule = "allowed_commands"
        elif policy.commands is not None and policy.unlisted_commands == "refuse":
            self._unlisted_rule = "unlisted_commands"
        self.limits = RunLimits(policy.limits)
        self.resources: ResourceLimits | None = (
            policy.resources if policy.resources.configured else None
        )

    def limited(self, spec: SpawnSpec, identity: str) -> SpawnSpec:
        """`spec` with the rlimits and the identity's output limit."""
        return attrs.evolve(
            spec,
            resources=self.resources,
            max_output_bytes=self.limits.for_identity(identity).max_output_bytes,
        )

    def check(
        self, params: ExecuteParams, argv: tuple[str, ...], env: Mapping[str, str]
    ) -> str | None:
        """Raise PolicyRefused unless this request may run; return the cwd to run in."""
        if params.shell and not self._allow_shell:
            raise PolicyRefused(
                "shell execution is disabled (rule: allow_shell=false); "
                "send argv or a command without shell: true",
                {"rule": "allow_shell"},
            )
        resolved = _resolve(argv[0], env.get("PATH"))
        if not self._sandboxed:
            self._check_sandbox_rule(params, argv, resolved)
        return self._check_command(argv, resolved, params.cwd, check_allow=True)

    def check_claude(
        self, argv: tuple[str, ...], cwd: str | None, env: Mapping[str, str]
    ) -> str | None:
        """The command rules for a `claude` run's built argv; return the cwd to run in.

        ``flags.allow`` is not applied: the profile adds flags of its own (-p,
        --output-format...) and a request's extra flags have their own allow-list
        (claude.allowed_flags).  ``allowed``, ``flags.require``, ``flags.forbid`` and the cwd
        roots hold.
        """
        resolved = _resolve(argv[0], env.get("PATH"))
        return self._check_command(argv, resolved, cwd, check_allow=False)

    def _check_command(
        self, argv: tuple[str, ...], resolved: str | None, cwd: str | None, *, check_allow: bool
    ) -> str | None:
        rule = self._rules.get(resolved) if resolved is not None else None
        if rule is None and self._unlisted_rule is not None:
            raise PolicyRefused(
                f"command {argv[0]!r} is not on the allow-list (rule: {self._unlisted_rule})",
                {"rule": self._unlisted_rule, "command": argv[0]},
            )
        if rule is not None:
            self._check_rule(rule, argv, check_allow=check_allow)
        roots, rule_name = self._cwd_roots, "cwd_roots"
        if rule is not None and rule.cwd_roots is not None:
            roots, rule_name = rule.cwd_roots, f"commands.{rule.name}.cwd_roots"
        if roots is None:
            return cwd
        # The run gets the resolved directory, so a symlink swapped after the check is moot.
        real = os.path.realpath(cwd if cwd is not None else os.getcwd())
        if not _inside(real, roots):
            raise PolicyRefused(
                f"cwd {cwd or os.getcwd()!r} is outside the allowed roots "
                f"{', '.join(roots)} (rule: {rule_name})",
                {"rule": rule_name, "cwd": cwd, "roots": list(roots)},
            )
        return real

    def _check_rule(self, rule: CommandRule, argv: tuple[str, ...], *, check_allow: bool) -> None:
        prefix = f"commands.{rule.name}"
        if not rule.allowed:
            raise PolicyRefused(
                f"command {argv[0]!r} is refused (rule: {prefix}.allowed=false)",
                {"rule": f"{prefix}.allowed", "command": argv[0]},
            )
        names = list(flag_names(argv[1:]))
        flags = rule.flags
        for name in names:
            if name in flags.forbid:
                raise PolicyRefused(
                    f"flag {name} is forbidden for {rule.name} (rule: {prefix}.flags.forbid)",
                    {"rule": f"{prefix}.flags.forbid", "flag": name},
                )
            if check_allow and flags.allow is not None and name not in flags.allow:
                raise PolicyRefused(
                    f"flag {name} is not allowed for {rule.name} (rule: {prefix}.flags.allow)",
                    {"rule": f"{prefix}.flags.allow", "flag": name},
                )
        for name in flags.require:
            if name not in names:
                raise PolicyRefused(
                    f"flag {name} is required for {rule.name} (rule: {prefix}.flags.require)",
                    {"rule": f"{prefix}.flags.require", "flag": name},
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
    patterns = config.policy.request_env
    for name, value in request_env.items():
        if name.startswith(_STRIPPED_PREFIXES):
            raise InvalidParams(f"environment variable {name} is reserved", {"variable": name})
        if patterns is not None and not any(fnmatchcase(name, p) for p in patterns):
            raise PolicyRefused(
                f"environment variable {name} may not be set by a request "
                f"(rule: env.request_allow = {list(patterns)})",
                {"rule": "env.request_allow", "variable": name},
            )
        env[name] = value
    return env
