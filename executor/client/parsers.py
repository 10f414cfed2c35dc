"""`ccx`'s client subcommands as argparse sees them: flags, help, an example for each.

`--url` and `--token` are accepted before the subcommand (`ccx --url URL ps`) and after it
(`ccx ps --url URL`); `target` says which daemon a command line names, and `Target.ccx` writes
a ccx command line that reaches the same daemon, for hints that work as printed.
"""

from __future__ import annotations

import argparse
import shlex
import urllib.parse
from collections.abc import Callable, Mapping

import attrs

from cc_executor.executor.client.claude_parsers import add_claude_parser
from cc_executor.executor.client.config import DEFAULT_URL
from cc_executor.executor.hosts import is_loopback

URL_HELP = f"the daemon's WebSocket URL (default {DEFAULT_URL}; CCX_URL)"
TOKEN_HELP = "bearer token for a daemon that requires one (CCX_TOKEN)"

TOP_EPILOG = f"""\
examples:
  ccx serve                          start the daemon on {DEFAULT_URL}
  ccx run -- make test               run a command there as if here
  ccx --url ws://build:8003/ ps      the runs of another daemon
  ccx claude                         a live Claude Code session at the terminal

Ctrl-C on `ccx run` interrupts the command as a local Ctrl-C would (SIGINT to its whole
process group); a second Ctrl-C kills it at once (SIGKILL); ccx then exits 130. Ctrl-Z pauses
the run and suspends ccx; `fg` resumes both. Ctrl-C on `ccx attach` stops following: the run
goes on (`ccx cancel RUN` ends it). Ctrl-C on `ccx claude` interrupts the running turn, not
the session; Ctrl-D closes it.

exit statuses: the command's own for `ccx run` (128+N when signal N ended it); otherwise
0 done, 1 a request failed, 2 usage, 64 not a ws:// URL, 67 no endpoint at that path,
69 no daemon answers, 75 the daemon is at its connection limit, 76 not a cc-executor daemon,
77 token missing or refused, 78 CCX_URL empty, 125 `ccx run` failed after connecting,
127 the command could not be started, 130 interrupted, 141 whoever read ccx's output stopped
reading; 3 for `ccx claude approve`: answered already by someone else."""


def sequence_number(text: str) -> int:
    """`--from SEQ`: a sequence number, refused here (exit 2) rather than by the daemon."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"not a sequence number (0 or more): {text!r}")
    return number


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal; epilogs (examples, tables) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:  # laid out by hand
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


@attrs.frozen
class Target:
    """The daemon a command line names, and how it was named."""

    url: str
    token: str | None
    url_from_env: bool = False

    @property
    def local(self) -> bool:
        """Whether the URL names this machine (loopback): then paths mean the same there."""
        return is_loopback(urllib.parse.urlsplit(self.url).hostname or "")

    def ccx(self, *words: str) -> str:
        """A ccx command line for this daemon (no token: that stays in the environment)."""
        url = () if self.url == DEFAULT_URL or self.url_from_env else ("--url", self.url)
        return shlex.join(["ccx", *url, *words])


def add_target_options(parser: argparse.ArgumentParser, *, before_command: bool) -> None:
    """`--url` and `--token`; before the subcommand they land in their own fields, so that a
    subcommand's default never overwrites them (argparse applies subparser defaults last)."""
    prefix = "global_" if before_command else ""
    default = None if before_command else argparse.SUPPRESS
    parser.add_argument("--url", dest=f"{prefix}url", default=default, metavar="URL", help=URL_HELP)
    parser.add_argument(
        "--token", dest=f"{prefix}token", default=default, metavar="TOKEN", help=TOKEN_HELP
    )


def target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    """The flag after the subcommand, else the one before it, else $CCX_URL, else the default.

    An empty value is kept as given, so that the connection can say what is wrong with it.
    """
    given = vars(args)
    token = given.get("token", given.get("global_token")) or environ.get("CCX_TOKEN") or None
    if "url" in given:
        return Target(given["url"], token)
    if given.get("global_url") is not None:
        return Target(given["global_url"], token)
    if "CCX_URL" in environ:
        return Target(environ["CCX_URL"], token, url_from_env=True)
    return Target(DEFAULT_URL, token)


def _subcommand(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    name: str,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        parents=[common],
        help=summary,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=HelpFormatter,
    )


def add_client_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], only: str | None = None
) -> None:
    """The client subcommands, beside `serve`; with `only`, that one alone (a command line
    that names a client command is parsed without building the others' parsers: W6)."""
    common = argparse.ArgumentParser(add_help=False)
    add_target_options(common, before_command=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    for name, add in _CLIENT_PARSERS.items():
        if only is None or name == only:
            add(sub, common, name)


_Sub = argparse._SubParsersAction
_Parser = argparse.ArgumentParser


def _run_parser(sub: _Sub[_Parser], common: _Parser, name: str) -> None:
    p = _subcommand(
        sub,
        common,
        name,
        "run a command on the daemon as if it ran here",
        "Run CMD on the daemon. Its stdout and stderr become ours as they arrive, our stdin "
        "(a pipe, or the terminal while ccx is in the foreground) becomes its, and ccx exits "
        "with its exit status (128+N when signal N ended it). On a daemon at a loopback URL "
        "the command runs in our working directory. CMD is an argv, run without a shell. "
        "Ctrl-C interrupts it (SIGINT), a second Ctrl-C kills it (exit 130); Ctrl-Z pauses it.",
        "  ccx run -- pytest -x tests/\n"
        "  ccx run --timeout 600 --env CI=1 -- make check\n"
        "  ccx run -- sh -c 'git log | head -n 3'     pipes and the like need a shell\n"
        "  ccx run --detach -- ./long-job.sh          prints the run id; see ccx attach",
    )
    p.add_argument(
        "--detach", action="store_true", help="start a durable run, print its id and return"
    )
    p.add_argument(
        "--durable", action="store_true", help="let the run outlive this ccx (and its connection)"
    )
    p.add_argument(
        "--cwd",
        metavar="DIR",
        help="the command's working directory (relative to ours when the daemon is local)",
    )
    p.add_argument(
        "--daemon-cwd",
        action="store_true",
        help="run in the daemon's own working directory (the default for a remote daemon)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a variable for the command (repeatable)",
    )
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="end the run after this many seconds"
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="end the run after this many seconds without output",
    )
    p.add_argument(
        "--shell",
        action="store_true",
        help="run CMD (one string) with the daemon's /bin/sh -c; the daemon allows this only "
        "when started with --allow-shell",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")


def _ps_parser(sub: _Sub[_Parser], common: _Parser, name: str) -> None:
    _subcommand(
        sub,
        common,
        name,
        "list your runs: state, age, bytes, last seq",
        "List the runs of your identity on every connection, oldest first: live ones, "
        "recently finished ones and durable ones.",
        "  ccx ps\n  ccx ps --json | jq '.[].run'",
    )


def _attach_parser(sub: _Sub[_Parser], common: _Parser, name: str) -> None:
    p = _subcommand(
        sub,
        common,
        name,
        "follow a durable run's output",
        "Print a durable run's output from the start (or after --from SEQ), then live, and "
        "exit with its status once it ends. Ctrl-C stops following and leaves it running.",
        "  ccx attach 3f2a9c1e0b7d4e55\n  ccx attach 3f2a9c1e0b7d4e55 --from 120",
    )
    p.add_argument("run", help="the run's id (ccx ps lists them)")
    p.add_argument(
        "--from",
        dest="from_seq",
        type=sequence_number,
        default=0,
        metavar="SEQ",
        help="only the events after this sequence number",
    )


def _logs_parser(sub: _Sub[_Parser], common: _Parser, name: str) -> None:
    p = _subcommand(
        sub,
        common,
        name,
        "print a durable run's output so far",
        "Print what a durable run has written so far, stdout and stderr apart, and return.",
        "  ccx logs 3f2a9c1e0b7d4e55 > run.log",
    )
    p.add_argument("run", help="the run's id (ccx ps lists them)")


# pause, resume and cancel: a summary and a description each, and the run they act on.
_CONTROLS = {
    "pause": ("pause a run", "Stop every process of a run (SIGSTOP); resume continues it."),
    "resume": ("resume a paused run", "Continue every process of a paused run (SIGCONT)."),
    "cancel": (
        "end a run",
        "End a run: SIGTERM to every process of it, SIGKILL after the daemon's grace.",
    ),
}


def _control_parser(sub: _Sub[_Parser], common: _Parser, name: str) -> None:
    summary, description = _CONTROLS[name]
    p = _subcommand(sub, common, name, summary, description, f"  ccx {name} 3f2a9c1e0b7d4e55")
    p.add_argument("run", help="the run's id (ccx ps lists them)")


def _signal_parser(sub: _Sub[_Parser], common: _Parser, name: str) -> None:
    p = _subcommand(
        sub,
        common,
        name,
        "send a signal to every process of a run",
        "Send a signal to the run's process group and every process that left it.",
        "  ccx signal 3f2a9c1e0b7d4e55 USR1\n  ccx signal 3f2a9c1e0b7d4e55 9",
    )
    p.add_argument("run", help="the run's id (ccx ps lists them)")
    p.add_argument("signal", help="a name (USR1, SIGTERM) or a number")


def _status_parser(sub: _Sub[_Parser], common: _Parser, name: str) -> None:
    _subcommand(
        sub,
        common,
        name,
        "the daemon's health",
        "Show the daemon's version, uptime, connections, live runs and capabilities.",
        "  ccx status\n  ccx --url ws://build:8003/ status --json",
    )


def _claude_parser(sub: _Sub[_Parser], common: _Parser, name: str) -> None:
    add_claude_parser(sub, common, HelpFormatter)


# Each client subcommand's parser, in the order `ccx --help` lists them.
_CLIENT_PARSERS: dict[str, Callable[[_Sub[_Parser], _Parser, str], None]] = {
    "run": _run_parser,
    "ps": _ps_parser,
    "attach": _attach_parser,
    "logs": _logs_parser,
    "pause": _control_parser,
    "resume": _control_parser,
    "cancel": _control_parser,
    "signal": _signal_parser,
    "status": _status_parser,
    "claude": _claude_parser,
}
CLIENT_COMMANDS = tuple(_CLIENT_PARSERS)
