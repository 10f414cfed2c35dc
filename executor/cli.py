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
    with_tokens,
)
from cc_executor.executor.daemon.serve import serve_until_signalled
from cc_executor.executor.logs import configure_logging
from cc_executor.executor.review.commands import (
    REVIEW_COMMANDS,
    add_review_parsers,
    run_review_command,
)
from cc_executor.executor.transport.listener import CannotListen, plain_error

# How `ccx serve` ends when it cannot start: one line on stderr and one of these.
EXIT_BAD_SETTING = 2
EXIT_UNREADABLE_FILE = 5
EXIT_CANNOT_LISTEN = {"in_use": 1, "address": 3, "permission": 4, "other": 6}
SERVE_EXIT_CODES = """exit status:
  0  stopped by SIGTERM or SIGINT after a graceful drain
  1  cannot listen: the address is already in use
  2  a bad setting (a flag, a CCX_* variable, the policy or token file's content)
  3  cannot listen: the host is not an address of this machine (or does not resolve)
  4  cannot listen: permission denied (a privileged port)
  5  a file named by the configuration cannot be read (--token-file, --policy)
  6  cannot listen, for another reason (the message says which)"""


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="start the daemon",
        description="Start the cc-executor daemon. Flags override CCX_* environment variables.",
        epilog=SERVE_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        help="pass this daemon variable to children (repeatable; CCX_PASS_ENV)",
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
        "--journal-error-policy",
        choices=("block", "cancel"),
        help="when a journal write fails (disk full, EIO): block the child and retry, or "
        "cancel the run (CCX_JOURNAL_ERROR_POLICY, default block)",
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
        "error_policy": args.journal_error_policy,
    }
    journal_changes = {k: v for k, v in journal_changes.items() if v is not None}
    if journal_changes:
        config = attrs.evolve(config, journal=attrs.evolve(config.journal, **journal_changes))
    config = with_tokens(config, os.environ)
    validate(config)
    return config


def unreadable_file(args: argparse.Namespace) -> str | None:
    """Why a file the configuration names cannot be read (None: every one can)."""
    named = (
        ("token file", args.token_file or os.environ.get("CCX_TOKEN_FILE")),
        ("policy file", args.policy or os.environ.get("CCX_POLICY")),
    )
    for what, path in named:
        if not path:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return f"cannot read the {what} {path}: {plain_error(exc)}"
    return None


def serve(args: argparse.Namespace) -> int:
    """``ccx serve``: start-up failures are one line on stderr and an exit status."""
    unreadable = unreadable_file(args)
    if unreadable is not None:
        print(f"ccx: {unreadable}", file=sys.stderr)
        return EXIT_UNREADABLE_FILE
    try:
        config = serve_config(args)
    except ConfigError as exc:
        print(f"ccx serve: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    configure_logging(config.log_level)
    try:
        trio.run(serve_until_signalled, config)
    except CannotListen as exc:
        print(f"ccx: {exc}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN[exc.kind]
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command in REVIEW_COMMANDS:
        return run_review_command(args)
    return run_client_command(args)
