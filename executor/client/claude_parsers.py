"""`ccx claude` as argparse sees it: the interactive session and its script subcommands."""

from __future__ import annotations

import argparse

CLAUDE_KEYS = """\
keys (interactive):
  Enter     send the line as a message (while a turn runs it is queued, or taken by that turn)
  y / n     answer the permission prompt shown (n REASON: deny, telling Claude why)
  Ctrl-C    interrupt the running turn (the session stays); at the prompt: a new prompt;
            while the daemon is not answering (said after 5 s): leave it (exit 130)
  Ctrl-D    close the session and exit (in `ccx claude attach`: leave it running)
  /model M, /mode MODE, /interrupt, /status, /detach, /close, /help"""

CLAUDE_EXIT_CODES = """\
exit status:
  0  the session was closed (Ctrl-D, /close, ccx claude close), or we left it running
  1  the session ended otherwise (cancelled, failed, lost), or a request failed
  130  Ctrl-C while the daemon was not answering: we left without it
  3  ccx claude approve: the request was already decided (the message says by whom)
  the connection statuses of every ccx command (69 no daemon, 77 token, ...; see ccx --help)"""

CLAUDE_EXAMPLES = """\
examples:
  ccx claude                               a session in this directory; type, Ctrl-D ends it
  ccx claude --model sonnet --durable      a session that outlives this terminal
  ccx claude --resume 5ccb6340-...         continue a Claude session (its id from ccx ps)
  ccx claude attach 3f2a9c1e0b7d4e55       join a durable session from another terminal
  ccx claude send 3f2a9c1e0b7d4e55 'now run the tests'
  ccx claude approve 3f2a9c1e0b7d4e55 REQUEST --deny --message 'not that file'"""


def _run_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the session's run id (ccx ps lists them)")


def add_claude_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> None:
    """`ccx claude` and its subcommands attach, send, approve, interrupt, close."""
    p = sub.add_parser(
        "claude",
        parents=[common],
        help="a live Claude Code session at the terminal",
        description="Start a Claude Code session on the daemon and talk to it: each line you "
        "type is a message, the answer streams in as it is written, a tool Claude wants to "
        "use is shown with its input for you to allow (y) or deny (n). One Claude process "
        "serves every turn. The subcommands drive a running session from scripts.",
        epilog=f"{CLAUDE_EXAMPLES}\n\n{CLAUDE_KEYS}\n\n{CLAUDE_EXIT_CODES}",
        formatter_class=formatter,
    )
    p.add_argument("--model", help="the model (the CLI's --model; /model changes it later)")
    p.add_argument(
        "--permission-mode",
        choices=("default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions"),
        help="the CLI's permission mode (/mode changes it later)",
    )
    p.add_argument(
        "--allowed-tool",
        action="append",
        default=[],
        dest="allowed_tools",
        metavar="TOOL",
        help="a tool Claude may use without asking (repeatable; the CLI's --allowedTools)",
    )
    p.add_argument(
        "--resume",
        metavar="SESSION",
        help="continue this Claude session (a UUID) in a new process",
    )
    p.add_argument(
        "--durable",
        action="store_true",
        help="let the session outlive this ccx: /detach leaves it, ccx claude attach rejoins",
    )
    p.add_argument(
        "--cwd",
        metavar="DIR",
        help="the session's working directory (relative to ours when the daemon is local)",
    )
    p.add_argument(
        "--daemon-cwd",
        action="store_true",
        help="work in the daemon's own working directory (the default for a remote daemon)",
    )
    p.add_argument("--prompt", metavar="TEXT", help="the first message, sent at once")
    nested = p.add_subparsers(dest="claude_command", metavar="SUBCOMMAND")

    a = nested.add_parser(
        "attach",
        parents=[common],
        help="join a running durable session",
        description="Join a durable session from another terminal: what happened so far is "
        "shown again (from --from SEQ on), pending permission requests are asked, then it is "
        "live. Ctrl-C interrupts the running turn, Ctrl-D leaves the session running, /close "
        "ends it.",
        epilog="examples:\n  ccx claude attach 3f2a9c1e0b7d4e55",
        formatter_class=formatter,
    )
    _run_arg(a)
    a.add_argument(
        "--from",
        dest="from_seq",
        type=int,
        default=0,
        metavar="SEQ",
        help="replay only what came after this sequence number",
    )

    s = nested.add_parser(
        "send",
        parents=[common],
        help="send one message to a session",
        description="Send TEXT to the session as a user message; prints the message id, the "
        "turn and whether it started that turn or was queued behind a running one.",
        epilog="examples:\n  ccx claude send 3f2a9c1e0b7d4e55 'now run the tests'\n"
        "  git diff | ccx claude send 3f2a9c1e0b7d4e55 -     the text from stdin",
        formatter_class=formatter,
    )
    _run_arg(s)
    s.add_argument("text", help="the message ('-': read it from stdin)")
    s.add_argument("--id", dest="message_id", help="the message's id (default: the daemon's)")

    v = nested.add_parser(
        "approve",
        parents=[common],
        help="answer a pending permission request",
        description="Allow (or with --deny, deny) a permission request of the session. The "
        "first answer wins: when someone else answered first, ccx says who and exits 3.",
        epilog="examples:\n  ccx claude approve 3f2a9c1e0b7d4e55 REQUEST\n"
        "  ccx claude approve 3f2a9c1e0b7d4e55 REQUEST --deny --message 'use the test db'",
        formatter_class=formatter,
    )
    _run_arg(v)
    v.add_argument("request", help="the request's id (ccx claude status RUN lists them)")
    v.add_argument("--deny", action="store_true", help="deny the tool use instead")
    v.add_argument("--message", help="with --deny: why, for Claude to read")

    for name, summary, description in (
        ("interrupt", "interrupt the running turn", "Stop the turn that is running; the "
         "session stays and takes the next message."),
        ("close", "end a session", "Close the session's input, let the CLI exit (the daemon "
         "ends it after its close grace), and print how the session ended."),
        ("status", "a session's state, turns, cost and pending requests", "Show the session's "
         "state, turn count, cost and tokens, and its pending permission requests."),
    ):  # fmt: skip
        n = nested.add_parser(
            name,
            parents=[common],
            help=summary,
            description=description,
            epilog=f"examples:\n  ccx claude {name} 3f2a9c1e0b7d4e55",
            formatter_class=formatter,
        )
        _run_arg(n)
