"""``ccx``: the command line.  ``ccx serve`` starts the daemon; the rest are its clients.

A client command (``ccx run``, ``ccx ps``, ...) should cost little more than the WebSocket
exchange it makes, so this module imports the daemon, the review tools and structlog only for
the commands that use them: the parser registers the review subcommands only when the command
line names one of them (or asks for help, or names no known command).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

from cc_executor.executor.client.parsers import (
    CLIENT_COMMANDS,
    TOP_EPILOG,
    HelpFormatter,
    add_client_parsers,
    add_target_options,
)
from cc_executor.executor.stdio import open_standard_streams

if TYPE_CHECKING:
    from cc_executor.executor.config.server import ServerConfig

SERVE_EXAMPLES = """\
examples:
  ccx serve                                   loopback, port 8003, any command, no tokens
  ccx serve --allow make --allow pytest       only these commands
  ccx serve --host 0.0.0.0 --token-file tokens.txt --policy policy.toml
  CCX_LOG_FORMAT=json ccx serve 2>> daemon.log"""

# `--url`/`--token` values before the subcommand, so that the command word can be found.
TARGET_FLAGS = ("--url", "--token")


class Parser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a mistyped subcommand or flag, and a flag no
    subcommand takes refused by that subcommand, with its usage (argparse leaves it to the
    top level, which printed `ccx`'s usage and "ccx: error: ...")."""

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            flags = [option for option in self._option_string_actions if option.startswith("--")]
            import difflib  # only for a mistake

            word = extras[0].split("=", 1)[0]
            close = difflib.get_close_matches(word, flags, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close and word.startswith("-") else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong is not None:
            import difflib  # only for a mistake

            choices = re.findall(r"'([^']*)'", wrong.group(2))
            close = difflib.get_close_matches(wrong.group(1), choices, n=1)
            message = f"unknown command {wrong.group(1)!r}" + (
                f"; did you mean {close[0]!r}?" if close else f" (commands: {', '.join(choices)})"
            )
        super().error(message)


class _Version(argparse.Action):
    """--version, reading the daemon's version only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from cc_executor.executor import VERSION

        print(f"cc-executor {VERSION}")
        parser.exit()


# `ccx`'s status when Ctrl-C ended it (ExitStatus.INTERRUPTED, without importing the client).
INTERRUPTED = 130

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
        description="Start the cc-executor daemon. Flags override CCX_* environment variables, "
        "which override the policy file. SIGTERM or Ctrl-C drains (runs may finish for "
        "--shutdown-grace seconds); a second one ends the runs at once.",
        epilog=f"{SERVE_EXAMPLES}\n\n{SERVE_EXIT_CODES}",
        formatter_class=HelpFormatter,
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
    p.add_argument(
        "--max-connections",
        type=int,
        help="clients connected at once; more are refused (CCX_MAX_CONNECTIONS, default 1024)",
    )
    p.add_argument(
        "--max-runs-per-connection",
        type=int,
        help="live runs one connection may have (CCX_MAX_RUNS_PER_CONNECTION, default 16)",
    )
    p.add_argument("--max-runs", type=int, help="runs in the whole daemon (CCX_MAX_RUNS)")
    p.add_argument(
        "--max-message-bytes",
        type=int,
        help="largest frame a client may send; bigger closes with 1009 (CCX_MAX_MESSAGE_BYTES)",
    )
    p.add_argument(
        "--stream-buffer",
        type=int,
        metavar="BYTES",
        help="bytes read from a run's pipe at a time; trades memory (a client that stops "
        "reading holds about 2.5x this per stream in the daemon) against throughput (fewer, "
        "bigger frames) (CCX_STREAM_BUFFER, default 131072)",
    )
    p.add_argument(
        "--term-grace",
        type=float,
        help="seconds between SIGTERM and SIGKILL when cancelling (CCX_TERM_GRACE, default 5)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        help="seconds live runs may go on finishing when the daemon drains, before they are "
        "cancelled (CCX_SHUTDOWN_GRACE, default 10)",
    )
    p.add_argument(
        "--ping-interval",
        type=float,
        metavar="SECONDS",
        help="ping every client this often and drop one whose pong is --ping-timeout late, "
        "ending its runs; 0 sends no pings (CCX_PING_INTERVAL, default 0; the original "
        "CC-Executor's was 20)",
    )
    p.add_argument(
        "--ping-timeout",
        type=float,
        metavar="SECONDS",
        help="how long a pong may take (CCX_PING_TIMEOUT, default 30)",
    )
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
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="the least important log lines written (CCX_LOG_LEVEL, default info)",
    )
    p.add_argument(
        "--log-format",
        choices=("console", "json"),
        help="console: plain lines for a person; json: one object per line (CCX_LOG_FORMAT; "
        "default console when stderr is a terminal, else json)",
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


def build_parser(
    *, review: bool = True, serve: bool = True, client: str | None = None
) -> argparse.ArgumentParser:
    """The whole command line; without `review` or `serve`, without those subcommands; with
    `client`, that client subcommand alone of them."""
    parser = Parser(
        prog="ccx",
        description="cc-executor: run long-running commands under real-time control.",
        epilog=TOP_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    add_target_options(parser, before_command=True)
    # Subparsers are Parsers too ("did you mean" at every level); typed as argparse's.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    if serve:
        _serve_parser(sub)
    add_client_parsers(sub, only=client)
    if review:
        from cc_executor.executor.review.commands import add_review_parsers

        add_review_parsers(sub)
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """The subcommand a command line names, if any (help and --version name none)."""
    words = iter(argv)
    for word in words:
        if word in TARGET_FLAGS:
            next(words, None)
        elif not word.startswith("-"):
            return word
        elif word in ("-h", "--help", "--version"):
            return None
    return None


def serve_config(args: argparse.Namespace) -> ServerConfig:
    """Flags over the environment over the policy file over the defaults."""
    import attrs

    from cc_executor.executor.config.server import (
        config_from_env,
        validate,
        with_pass_env_expanded,
        with_tokens,
    )

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
    supervision_changes = {"term_grace": args.term_grace, "read_size": args.stream_buffer}
    supervision_changes = {k: v for k, v in supervision_changes.items() if v is not None}
    if supervision_changes:
        config = attrs.evolve(
            config, supervision=attrs.evolve(config.supervision, **supervision_changes)
        )
    transport_changes = {"ping_interval": args.ping_interval, "ping_timeout": args.ping_timeout}
    transport_changes = {k: v for k, v in transport_changes.items() if v is not None}
    if transport_changes:
        config = attrs.evolve(config, transport=attrs.evolve(config.transport, **transport_changes))
    journal_changes = {
        "quota_bytes": args.journal_quota_bytes,
        "quota_policy": args.journal_quota_policy,
        "fsync": args.journal_fsync,
        "error_policy": args.journal_error_policy,
    }
    journal_changes = {k: v for k, v in journal_changes.items() if v is not None}
    if journal_changes:
        config = attrs.evolve(config, journal=attrs.evolve(config.journal, **journal_changes))
    config = with_pass_env_expanded(with_tokens(config, os.environ), os.environ)
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
        from cc_executor.supervision.files import open_regular  # serve only: ccx's start-up

        try:
            os.close(open_regular(path, os.O_RDONLY, follow=True))
        except OSError as exc:
            from cc_executor.executor.transport.listener import plain_error

            return f"cannot read the {what} {path}: {plain_error(exc)}"
    return None


def serve(args: argparse.Namespace) -> int:
    """``ccx serve``: start-up failures are one line on stderr and an exit status."""
    from cc_executor.executor.config.server import ConfigError
    from cc_executor.executor.daemon.loop import serve_on_loop_thread
    from cc_executor.executor.logs import choose_format, configure_logging
    from cc_executor.executor.transport.listener import CannotListen

    unreadable = unreadable_file(args)
    if unreadable is not None:
        print(f"ccx: {unreadable}", file=sys.stderr)
        return EXIT_UNREADABLE_FILE
    try:
        config = serve_config(args)
        json_logs = choose_format(args.log_format, os.environ, sys.stderr) == "json"
    except (ConfigError, ValueError) as exc:
        print(f"ccx serve: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    if config.cwd is not None:
        os.chdir(config.cwd)  # the daemon's, and every run's that asks for none
    configure_logging(config.log_level, json=json_logs)
    try:
        serve_on_loop_thread(config)
    except CannotListen as exc:
        print(f"ccx: {exc}{listen_todo(exc.kind, config.host, config.port)}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN[exc.kind]
    return 0


def listen_todo(kind: str, host: str, port: int) -> str:
    """What to do when the daemon cannot listen, after the OS's reason."""
    if kind == "in_use":
        shown = f"[{host}]" if ":" in host else host
        status = f"ccx --url ws://{shown}:{port}/ status"
        return (
            f" — another program listens there ({status} says whether it is a daemon "
            "already); stop it, or choose another port with --port (CCX_PORT)"
        )
    if kind == "address":
        return " — --host (CCX_HOST) must be an address of this machine, or a name for one"
    if kind == "permission":
        return " — a port below 1024 needs privileges: choose --port 1024 or above (CCX_PORT)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """`ccx`; as the program itself (no `argv`) a client command, once done, exits at once."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before a command took it over (while connecting, say: to a daemon that does
        # not answer) was a traceback; interrupted, a tool says nothing more and exits 130.
        return INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    word = command_word(argv)
    if program and word == "serve":  # before anything else: never another daemon's marker
        from cc_executor.executor.daemon.marking import reexec_unmarked

        reexec_unmarked()
    open_standard_streams()
    if word in CLIENT_COMMANDS:  # parsed without the parsers it cannot need (W6)
        parser = build_parser(review=False, serve=False, client=word)
    else:
        parser = build_parser(review=word != "serve")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command in CLIENT_COMMANDS:
        from cc_executor.executor.client.commands import leave, run_client_command

        status = run_client_command(args)
        return leave(status) if program else status
    from cc_executor.executor.review.commands import run_review_command

    return run_review_command(args)
