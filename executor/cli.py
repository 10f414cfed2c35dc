"""``ccx``: the command line.  ``ccx serve`` starts the daemon; the rest are its clients."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import attrs
import trio

from cc_executor.executor import VERSION
from cc_executor.executor.client.commands import add_client_parsers, run_client_command
from cc_executor.executor.config.server import (
    ConfigError,
    ServerConfig,
    config_from_env,
    validate,
    with_pass_env_expanded,
    with_tokens,
)
from cc_executor.executor.daemon.serve import serve_until_signalled
from cc_executor.executor.logs import configure_logging
from cc_executor.executor.review.commands import (
    REVIEW_COMMANDS,
    add_review_parsers,
    run_review_command,
)


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="start the daemon",
        description="Start the cc-executor daemon. Flags override CCX_* environment variables.",
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; CCX_HOST)")
    p.add_argument("--port", type=int, help="port to listen on (default 8003; CCX_PORT)")
    p.add_argument(
        "--allow",
        action="append",
        metavar="COMMAND",
        help="allow this command (repeatable); without any, every command is allowed (CCX_ALLOW)",
    )
    p.add_argument(
        "--allow-shell",
        action="store_true",
        default=None,
        help="let requests ask for /bin/sh -c (CCX_ALLOW_SHELL)",
    )
    p.add_argument("--max-connections", type=int, help="(CCX_MAX_CONNECTIONS, default 1024)")
    p.add_argument(
        "--max-runs-per-connection", type=int, help="(CCX_MAX_RUNS_PER_CONNECTION, default 16)"
    )
    p.add_argument("--max-runs", type=int, help="runs in the whole daemon (CCX_MAX_RUNS)")
    p.add_argument(
        "--max-message-bytes",
        type=int,
        help="largest frame a client may send; bigger closes with 1009 (CCX_MAX_MESSAGE_BYTES)",
    )
    p.add_argument(
        "--term-grace",
        type=float,
        help="seconds between SIGTERM and SIGKILL when cancelling (CCX_TERM_GRACE, default 5)",
    )
    p.add_argument("--shutdown-grace", type=float, help="(CCX_SHUTDOWN_GRACE, default 10)")
    p.add_argument(
        "--pass-env",
        action="append",
        metavar="NAME",
        help="pass this daemon variable to children (repeatable; CCX_PASS_ENV); a glob "
        "('*', 'LC_*') passes every matching one but CCX_* and Claude Code's markers",
    )
    p.add_argument(
        "--cwd",
        metavar="DIR",
        help="the daemon's working directory, and every run's unless it asks for one "
        "(CCX_CWD; default: where the daemon starts)",
    )
    p.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="(CCX_LOG_LEVEL)"
    )
    p.add_argument(
        "--state-dir",
        help="where durable runs' journals live (CCX_STATE_DIR; default "
        "$XDG_STATE_HOME/cc-executor or ~/.local/state/cc-executor)",
    )
    p.add_argument(
        "--journal-quota-bytes",
        type=int,
        help="largest journal of one durable run (CCX_JOURNAL_QUOTA_BYTES, default 1 GiB)",
    )
    p.add_argument(
        "--journal-quota-policy",
        choices=("block", "gap"),
        help="at the quota: block the child, or stop recording with a gap marker "
        "(CCX_JOURNAL_QUOTA_POLICY, default block)",
    )
    p.add_argument(
        "--journal-fsync",
        choices=("never", "completion", "always"),
        help="when journal writes are fsynced (CCX_JOURNAL_FSYNC, default completion)",
    )
    p.add_argument(
        "--retention-seconds",
        type=float,
        help="keep a completed run's journal this long (CCX_RETENTION_SECONDS, default 7 days)",
    )
    p.add_argument(
        "--retention-bytes",
        type=int,
        help="completed journals may hold this much in all; the oldest are removed first "
        "(CCX_RETENTION_BYTES, default 10 GiB)",
    )
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help="tokens clients must present, one 'NAME TOKEN [admin]' per line (CCX_TOKEN_FILE; "
        "CCX_TOKENS=name:token,... adds more)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="a browser Origin allowed to connect (repeatable; CCX_ALLOW_ORIGIN); "
        "connections sending any other Origin are refused",
    )
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="the policy file (TOML): command and flag rules, cwd roots, environment, "
        "per-identity limits, rlimits; flags and CCX_* variables override it (CCX_POLICY)",
    )
    p.add_argument(
        "--instance",
        help="this daemon's name in durable run ids, for routing attach to it "
        "(CCX_INSTANCE; default: the host name)",
    )
    p.add_argument(
        "--insecure-listen",
        action="store_true",
        default=None,
        help="allow listening beyond loopback without tokens (CCX_INSECURE_LISTEN)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccx", description="cc-executor: run long-running commands under real-time control."
    )
    parser.add_argument("--version", action="version", version=f"cc-executor {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    add_client_parsers(sub)
    add_review_parsers(sub)
    return parser


def serve_config(args: argparse.Namespace) -> ServerConfig:
    """Flags over the environment over the policy file over the defaults."""
    config = config_from_env(check=False, policy_path=args.policy)
    changes = {
        "host": args.host,
        "port": args.port,
        "allowed_commands": tuple(args.allow) if args.allow else None,
        "allow_shell": args.allow_shell,
        "max_connections": args.max_connections,
        "max_runs_per_connection": args.max_runs_per_connection,
        "max_runs": args.max_runs,
        "max_message_bytes": args.max_message_bytes,
        "shutdown_grace": args.shutdown_grace,
        "pass_env": tuple(args.pass_env) if args.pass_env else None,
        "cwd": args.cwd,
        "log_level": args.log_level,
        "state_dir": args.state_dir,
        "retention_seconds": args.retention_seconds,
        "retention_bytes": args.retention_bytes,
        "token_file": args.token_file,
        "allowed_origins": tuple(args.allow_origin) if args.allow_origin else None,
        "insecure_listen": args.insecure_listen,
        "instance": args.instance,
    }
    config = attrs.evolve(config, **{k: v for k, v in changes.items() if v is not None})
    if args.term_grace is not None:
        config = attrs.evolve(
            config, supervision=attrs.evolve(config.supervision, term_grace=args.term_grace)
        )
    journal_changes = {
        "quota_bytes": args.journal_quota_bytes,
        "quota_policy": args.journal_quota_policy,
        "fsync": args.journal_fsync,
    }
    journal_changes = {k: v for k, v in journal_changes.items() if v is not None}
    if journal_changes:
        config = attrs.evolve(config, journal=attrs.evolve(config.journal, **journal_changes))
    config = with_pass_env_expanded(with_tokens(config, os.environ), os.environ)
    validate(config)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        try:
            config = serve_config(args)
        except ConfigError as exc:
            print(f"ccx serve: {exc}", file=sys.stderr)
            return 2
        if config.cwd is not None:
            os.chdir(config.cwd)
        configure_logging(config.log_level)
        trio.run(serve_until_signalled, config)
        return 0
    if args.command in REVIEW_COMMANDS:
        return run_review_command(args)
    return run_client_command(args)
