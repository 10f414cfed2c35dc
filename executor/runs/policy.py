"""What a client may run: command rules, the shell opt-in, cwd roots and the child environment.

``CommandPolicy.vet`` is the one door every run goes through: it turns a request into the
``SpawnSpec`` that runs exactly what it checked, or raises the refusal.

**What is checked is what runs.**  argv0 is resolved as exec will resolve it — in the run's cwd,
on the run's PATH (``supervision.spawn.locate``) — to the real path of a file, the rules are
looked up by that path, and the run execs that path (``SpawnSpec.executable``), so neither a
relative name (``../../usr/bin/echo`` from a chosen cwd), nor a PATH entry, nor a symlink
swapped after the check can make an allowed name run another file.  The run's cwd is resolved
the same way (``realpath``), and a request's PATH may hold only absolute directories
(environment.py).

Command rules come from ``--allow`` (a bare allow-list) and the policy file's ``[commands.<name>]``
tables (allowed, flag rules, cwd roots; policyfile.py), each resolved once at start against the
daemon's PATH.  A command no rule names is refused when there is an allow-list (``--allow``, or a
``[commands]`` table with ``unlisted_commands = "refuse"``).  Refusals are ``PolicyRefused``
errors whose ``data.rule`` names the rule that refused; the message says what and why, and
leaves naming the rule to ``data``.

Flags are the arguments that start with ``-`` before a ``--``, compared by name (the part before
any ``=``): ``--model=x`` is ``--model``; a flag's separate value (``--model x``) is not a flag.

The flag rule for Claude Code holds for ``execute`` too: unless the daemon is configured as
sandboxed, argv naming the CLI (``claude``, or the configured binary) may not bypass its
permission checks, and no request may set ``IS_SANDBOX``; and the CLI's own ``CLAUDE_*``
variables count as start-up variables.  (A shell command line is opaque to this rule; the
shell is opt-in.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import attrs
import structlog

from cc_executor.executor.config.claude import permission_bypass
from cc_executor.executor.config.policyfile import CommandRule, FlagRules
from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.runs.environment import check_request_env, child_environment
from cc_executor.executor.runs.limits import RunLimits
from cc_executor.protocol import ExecuteParams, PolicyRefused, resolve_argv
from cc_executor.supervision import ResourceLimits, SpawnSpec
from cc_executor.supervision.spawn import locate

log = structlog.get_logger()


def flag_names(args: Sequence[str]) -> Iterator[str]:
    """The names of the flags among `args` (see the module docstring)."""
    for arg in args:
        if arg == "--":
            return
        if arg.startswith("-") and arg != "-":
            yield arg.partition("=")[0]


def inside(path: str, roots: Sequence[str]) -> bool:
    """True if the real path `path` is one of `roots` or below one (roots are resolved)."""
    for root in roots:
        real_root = os.path.realpath(root)
        if path == real_root or path.startswith(real_root.rstrip("/") + "/"):
            return True
    return False


@attrs.frozen
class Vetted:
    """A command the policy lets run, resolved as it will run.

    Attributes:
        argv: as the request gave it (the child's argv[0] is the request's).
        executable: the real path exec will run; None when nothing is found (spawn then
            reports "command not found").
        env: the child's complete environment.
        cwd: the real path of the run's cwd; None: the daemon's (no roots to hold it to).
        roots: the cwd roots that apply to this command, and the rule that names them
            (None: anywhere).
    """

    argv: tuple[str, ...]
    executable: str | None
    env: Mapping[str, str]
    cwd: str | None
    roots: tuple[str, ...] | None
    roots_rule: str


class CommandPolicy:
    """Command rules, the shell rule and cwd roots, resolved once against the daemon's PATH;
    and the per-identity run limits (limits.py)."""

    def __init__(self, config: ServerConfig) -> None:
        policy = config.policy
        self._config = config
        self._allow_shell = config.allow_shell
        self._sandboxed = config.claude.sandboxed
        self._claude = locate(config.claude.binary, None, os.environ)
        self._cwd_roots = policy.cwd_roots
        self._rules: dict[str, CommandRule] = {}
        self._not_found: list[str] = []
        named: list[tuple[str, CommandRule | None]] = list((policy.commands or {}).items())
        named += [(entry, None) for entry in config.allowed_commands or ()]
        for name, rule in named:
            resolved = locate(name, None, os.environ)
            if resolved is None:
                log.warning("policy.command_not_found", command=name)
                self._not_found.append(name)
            elif rule is not None:
                self._rules[resolved] = rule
            else:  # from --allow: a file rule for the same command wins
                self._rules.setdefault(resolved, CommandRule(name))
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
        if policy.resources.processes is not None and os.geteuid() == 0:
            # The kernel does not enforce RLIMIT_NPROC on root (nor with CAP_SYS_RESOURCE or
            # CAP_SYS_ADMIN): the runs of a daemon running as root get no process limit.
            log.warning(
                "policy.nproc_ignored_as_root",
                processes=policy.resources.processes,
                hint="run the daemon as a non-root user for [resources] processes to hold",
            )

    # -- the door ----------------------------------------------------------------------------

    def vet(self, params: ExecuteParams, identity: str, run_id: str) -> SpawnSpec:
        """The spec that runs `params` for `identity`, exactly as checked.

        Raises:
            InvalidParams: the command does not split, or a reserved variable.
            PolicyRefused: a rule refuses the request (``data.rule`` names it).
        """
        if params.shell and not self._allow_shell:
            raise PolicyRefused(
                "shell execution is disabled; send argv, or a command without shell: true",
                {"rule": "allow_shell"},
            )
        argv = resolve_argv(params)
        vetted = self.vet_argv(argv, params.cwd, params.env, check_allow=True)
        return self.spec(vetted, identity, run_id, params.stdin)

    def vet_argv(
        self,
        argv: tuple[str, ...],
        cwd: str | None,
        request_env: Mapping[str, str],
        *,
        check_allow: bool,
        env: Mapping[str, str] | None = None,
    ) -> Vetted:
        """Resolve and check `argv` in `cwd` with the request's environment.

        `env` is the child's environment when the caller built it (the `claude` method);
        otherwise it is the pass-list plus `request_env`.  ``flags.allow`` is applied only
        with `check_allow`: the `claude` profile adds flags of its own (-p,
        --output-format...), and a request's extra flags have their own allow-list
        (claude.allowed_flags); ``allowed``, ``flags.require``, ``flags.forbid`` and the cwd
        roots always hold.
        """
        built_here = env is None
        if env is None:
            env = child_environment(self._config, request_env)
        real_cwd = os.path.realpath(cwd) if cwd is not None else None
        executable = locate(argv[0], real_cwd, env)
        is_claude = os.path.basename(argv[0]) == "claude" or (
            executable is not None and executable == self._claude
        )
        if is_claude and built_here:
            # Only now is it known that the program is the CLI, whose CLAUDE_* variables are
            # start-up variables too (the claude method built its env with them already).
            policy = self._config.policy
            check_request_env(request_env, policy.startup_env, policy.request_env, claude=True)
        if not self._sandboxed:
            self._check_sandbox_rule(argv, request_env, is_claude=is_claude)
        rule = self._rules.get(executable) if executable is not None else None
        if rule is None and self._unlisted_rule is not None:
            shown = "" if executable in (argv[0], None) else f" ({executable})"
            said = f"command {argv[0]!r}{shown} is not on the allow-list"
            if executable is None:  # nothing to check: say so, not only that it is unlisted
                said = (
                    f"command {argv[0]!r} is on the allow-list, but no such program is found"
                    if argv[0] in self._not_found
                    else f"command {argv[0]!r} is not found, and not on the allow-list"
                )
            raise PolicyRefused(
                said,
                {"rule": self._unlisted_rule, "command": argv[0], "executable": executable},
            )
        if rule is not None:
            self._check_rule(rule, argv, check_allow=check_allow)
        roots, roots_rule = self._cwd_roots, "cwd_roots"
        if rule is not None and rule.cwd_roots is not None:
            roots, roots_rule = rule.cwd_roots, f"commands.{rule.name}.cwd_roots"
        if roots is not None:
            # The run gets the resolved directory, so a symlink swapped after the check is moot.
            real_cwd = real_cwd or os.path.realpath(os.getcwd())
            if not inside(real_cwd, roots):
                raise PolicyRefused(
                    f"cwd {cwd or os.getcwd()!r} is outside the allowed roots {', '.join(roots)}",
                    {"rule": roots_rule, "cwd": cwd, "roots": list(roots)},
                )
        return Vetted(argv, executable, env, real_cwd, roots, roots_rule)

    def spec(
        self, vetted: Vetted, identity: str, run_id: str, stdin: Literal["null", "pipe"]
    ) -> SpawnSpec:
        """The spec of a vetted command: with the rlimits and the identity's output limit."""
        return SpawnSpec(
            argv=vetted.argv,
            executable=vetted.executable,
            env=vetted.env,
            cwd=vetted.cwd,
            stdin=stdin,
            run_id=run_id,
            resources=self.resources,
            max_output_bytes=self.limits.for_identity(identity).max_output_bytes,
        )

    # -- rules ---------------------------------------------------------------------------------

    def _check_rule(self, rule: CommandRule, argv: tuple[str, ...], *, check_allow: bool) -> None:
        prefix = f"commands.{rule.name}"
        if not rule.allowed:
            raise PolicyRefused(
                f"command {argv[0]!r} is refused by the policy",
                {"rule": f"{prefix}.allowed", "command": argv[0]},
            )
        names = list(flag_names(argv[1:]))
        flags = rule.flags
        for name in names:
            if name in flags.forbid:
                raise PolicyRefused(
                    f"flag {name} is forbidden for {rule.name}",
                    {"rule": f"{prefix}.flags.forbid", "flag": name},
                )
            if check_allow and flags.allow is not None and name not in flags.allow:
                raise PolicyRefused(
                    f"flag {name} is not allowed for {rule.name}",
                    {"rule": f"{prefix}.flags.allow", "flag": name},
                )
        for name in flags.require:
            if name not in names:
                raise PolicyRefused(
                    f"flag {name} is required for {rule.name}",
                    {"rule": f"{prefix}.flags.require", "flag": name},
                )

    def _check_sandbox_rule(
        self, argv: tuple[str, ...], request_env: Mapping[str, str], *, is_claude: bool
    ) -> None:
        if "IS_SANDBOX" in request_env:
            raise PolicyRefused(
                "IS_SANDBOX is refused: the daemon is not configured as sandboxed",
                {"rule": "claude.sandboxed", "variable": "IS_SANDBOX"},
            )
        flag = permission_bypass(argv[1:]) if is_claude else None
        if flag is not None:
            raise PolicyRefused(
                f"{flag} is refused: the daemon is not configured as sandboxed",
                {"rule": "claude.sandboxed", "flag": flag},
            )

    # -- what it does ------------------------------------------------------------------------

    def summary(self) -> dict[str, object]:
        """What this policy does, for the start-up log: from the rules as resolved."""
        policy = self._config.policy
        rules = sorted(self._rules.items(), key=lambda item: item[1].name)
        return {
            "unlisted_commands": "refused" if self._unlisted_rule is not None else "allowed",
            "allowed": [f"{rule.name}={path}" for path, rule in rules if rule.allowed],
            "refused": [rule.name for _, rule in rules if not rule.allowed],
            "flag_rules": [rule.name for _, rule in rules if rule.flags != FlagRules()],
            "not_found": sorted(self._not_found),
            "shell": "allowed" if self._allow_shell else "refused",
            "sandboxed": self._sandboxed,
            "cwd_roots": list(self._cwd_roots) if self._cwd_roots is not None else "anywhere",
            "request_env": list(policy.request_env) if policy.request_env is not None else "any",
            "startup_env_allowed": list(policy.startup_env),
            "rlimits": list(self.resources.prlimit_args()) if self.resources else [],
        }
