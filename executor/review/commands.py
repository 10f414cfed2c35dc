"""`ccx review run|check|next|loop` and `ccx prompts record|check`.

Registered beside the client commands by `add_review_parsers`; `run_review_command` runs one.
Failures are one line on stderr (`ccx: ...`); validation problems are `file:line: message`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from cc_executor.executor.client import (
    ClientError,
    DaemonUnavailable,
    ServerError,
    open_connection,
)
from cc_executor.executor.client.config import DEFAULT_URL
from cc_executor.executor.logs import configure_logging
from cc_executor.executor.review.artifacts import (
    check_prompt_file,
    check_prompts,
    check_review_pair,
    check_reviews,
    shown,
)
from cc_executor.executor.review.chain import Entry
from cc_executor.executor.review.demos import run_demos
from cc_executor.executor.review.loop import LoopSettings, run_loop
from cc_executor.executor.review.names import (
    ArtifactName,
    check_focus_area,
    next_sequence,
    parse_name,
)
from cc_executor.executor.review.problems import Problem
from cc_executor.executor.review.record import record_prompt, rewrite_prompt

REVIEW_COMMANDS = ("review", "prompts")


def add_review_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`review` and `prompts`, each with its own subcommands."""
    daemon = argparse.ArgumentParser(add_help=False)
    daemon.add_argument(
        "--url",
        default=os.environ.get("CCX_URL", DEFAULT_URL),
        help=f"the daemon's WebSocket URL (default {DEFAULT_URL}; CCX_URL)",
    )
    daemon.add_argument(
        "--token", default=os.environ.get("CCX_TOKEN"), help="bearer token (CCX_TOKEN)"
    )
    rooted = argparse.ArgumentParser(add_help=False)
    rooted.add_argument(
        "--root", default=".", help="the repository the commands run in (default: .)"
    )

    review = sub.add_parser("review", help="the review loop: usage demos, checks, the driver")
    rsub = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    p = rsub.add_parser(
        "run",
        parents=[daemon, rooted],
        help="run every usage demo through the daemon and print the execution log",
    )
    p.add_argument("--out", metavar="FILE", help="write the log here instead of stdout")
    p = rsub.add_parser(
        "check", parents=[rooted], help="validate review artifacts and prompts (file:line: ...)"
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="folders (reviews/, prompts/) or files; default: ROOT/reviews and ROOT/prompts",
    )
    p = rsub.add_parser("next", parents=[rooted], help="print the next review's file names")
    p.add_argument("focus", help="the focus area, e.g. websocket_backpressure")
    p.add_argument("--reviews", help="the reviews folder (default ROOT/reviews)")
    p = rsub.add_parser(
        "loop",
        parents=[daemon, rooted],
        help="reviewer -> validation -> implementer per fix -> usage demos, until clean",
    )
    p.add_argument("--reviewer", required=True, metavar="CMD", help="the reviewer command line")
    p.add_argument(
        "--implementer", required=True, metavar="CMD", help="the implementer command line"
    )
    p.add_argument("--rounds", type=int, default=3, help="at most this many rounds (default 3)")
    p.add_argument("--reviews", help="the reviews folder (default ROOT/reviews)")
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per reviewer/implementer run"
    )

    prompts = sub.add_parser("prompts", help="self-improving prompts: record executions, check")
    psub = prompts.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    p = psub.add_parser(
        "record",
        parents=[daemon, rooted],
        help="run a prompt's verification commands through the daemon and update its metrics",
    )
    p.add_argument("prompt", help="the prompt file, e.g. prompts/protocol_codec.md")
    p.add_argument(
        "--rewrite-only",
        action="store_true",
        help="run nothing: rewrite the prompt's metrics from its record as it stands",
    )
    p = psub.add_parser("check", parents=[rooted], help="validate prompts (file:line: ...)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="default: ROOT/prompts")


def _review_target(args: argparse.Namespace) -> None:
    """A `--url` before `review`/`prompts` counts unless one after it says otherwise (their
    parsers default `url` to $CCX_URL, so an unchanged default means none was given)."""
    if args.global_url is not None and args.url == os.environ.get("CCX_URL", DEFAULT_URL):
        args.url = args.global_url
    if args.global_token is not None and args.token == os.environ.get("CCX_TOKEN"):
        args.token = args.global_token


def run_review_command(args: argparse.Namespace) -> int:
    """Run `ccx review ...` or `ccx prompts ...`; returns the exit status."""
    configure_logging("error", json=False)
    _review_target(args)
    action = args.review_command if args.command == "review" else args.prompts_command
    try:
        return trio.run(_ACTIONS[(args.command, action)], args)
    except DaemonUnavailable as exc:
        # The client commands' words (which daemon, how to start one where the URL points).
        from cc_executor.executor.client.failures import connect_failure
        from cc_executor.executor.client.parsers import Target

        _say(connect_failure(exc, Target(exc.url, None)).text)
    except ServerError as exc:
        _say(f"ccx: {exc.message} (error {exc.code})")
    except (ClientError, UsageError) as exc:
        _say(f"ccx: {exc}")
    return 1


class UsageError(Exception):
    """A mistake in the command line that argparse cannot see."""


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _report(problems: list[Problem], what: str) -> int:
    for problem in problems:
        print(problem)
    if problems:
        _say(f"ccx: {len(problems)} problem(s) in {what}")
        return 1
    print(f"{what}: ok")
    return 0


def _connect(args: argparse.Namespace) -> Any:
    return open_connection(args.url, token=args.token)


def _absolute(raw: str) -> Path:
    return Path(raw).resolve()


def _existing_file(raw: str) -> Path:
    path = Path(raw).resolve()
    if not path.is_file():
        raise UsageError(f"no such file: {raw}")
    return path


def _root(args: argparse.Namespace) -> Path:
    root = Path(args.root).resolve()
    if not root.is_dir():
        raise UsageError(f"--root {args.root}: not a directory")
    return root


async def _review_run(args: argparse.Namespace) -> int:
    root = _root(args)
    async with _connect(args) as conn:
        log, passed = await run_demos(conn, cwd=str(root))
    if args.out:
        await trio.Path(args.out).write_text(log)
        _say(f"ccx: wrote the execution log to {args.out}")
    else:
        sys.stdout.write(log)
    if not passed:
        _say("ccx: a usage demo failed or printed no run marker (see the log)")
    return 0 if passed else 1


def _check_paths(paths: list[str], root: Path, default: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    for raw in paths or [str(root / d) for d in default]:
        path = Path(raw)
        if path.is_dir():
            is_prompts = path.name == "prompts" or any(path.glob("*PROMPT_TEMPLATE.md"))
            problems += check_prompts(path, root) if is_prompts else check_reviews(path, root)
        elif path.name.endswith("_review_feedback.md"):
            fixes = path.with_name(path.name.replace("_review_feedback.md", "_fixes.json"))
            problems += check_review_pair(path, fixes, root)
        elif path.name.endswith("_fixes.json"):
            feedback = path.with_name(path.name.replace("_fixes.json", "_review_feedback.md"))
            problems += check_review_pair(feedback, path, root)
        elif path.suffix == ".md" and path.is_file():
            problems += check_prompt_file(path, root)
        else:
            problems.append(
                Problem(
                    raw,
                    1,
                    "no such artifact (expected a reviews or prompts "
                    "folder, a *_review_feedback.md, *_fixes.json or prompt)",
                )
            )
    return problems


async def _review_check(args: argparse.Namespace) -> int:
    root = _root(args)
    problems = await trio.to_thread.run_sync(_check_paths, args.paths, root, ["reviews", "prompts"])
    return _report(problems, " ".join(args.paths) or "reviews/ and prompts/")


async def _prompts_check(args: argparse.Namespace) -> int:
    root = _root(args)
    problems = await trio.to_thread.run_sync(_check_paths, args.paths, root, ["prompts"])
    return _report(problems, " ".join(args.paths) or "prompts/")


async def _review_next(args: argparse.Namespace) -> int:
    trouble = check_focus_area(args.focus)
    if trouble:
        raise UsageError(trouble)
    folder = Path(args.reviews) if args.reviews else _root(args) / "reviews"
    names = sorted(p.name for p in await trio.Path(folder).iterdir()) if folder.is_dir() else []
    sequence = next_sequence(names)
    for kind in ("review_feedback", "fixes"):
        name = ArtifactName(sequence, args.focus, kind)
        assert not isinstance(parse_name(name.file_name()), Problem)
        print(folder / name.file_name())
    return 0


async def _review_loop(args: argparse.Namespace) -> int:
    root = _root(args)
    if args.rounds < 1:
        raise UsageError("--rounds must be at least 1")
    settings = LoopSettings(
        reviewer=tuple(shlex.split(args.reviewer)),
        implementer=tuple(shlex.split(args.implementer)),
        root=root,
        reviews=_absolute(args.reviews) if args.reviews else root / "reviews",
        rounds=args.rounds,
        timeout=args.timeout,
    )
    async with _connect(args) as conn:
        result = await run_loop(conn, settings)
    for report in result.rounds:
        fixes = len(report.implementer)
        print(
            f"round {report.sequence:03d}: review {report.review_id or '-'}, "
            f"reviewer {report.reviewer.outcome}({report.reviewer.exit_code}), "
            f"{fixes} implementer run(s), "
            f"demos after: {'-' if report.demos_passed is None else report.demos_passed}"
        )
    for problem in result.problems:
        print(problem)
    print(
        f"loop: {result.outcome} after {len(result.rounds)} round(s); "
        f"artifacts in {shown(settings.reviews, root)}/"
    )
    return 0 if result.outcome == "clean" else 1


async def _prompts_record(args: argparse.Namespace) -> int:
    root = _root(args)
    prompt = _existing_file(args.prompt)
    if args.rewrite_only:
        return await _prompts_rewrite(prompt, root, args.prompt)
    async with _connect(args) as conn:
        result = await record_prompt(conn, prompt, root=root)
    if not isinstance(result, Entry):
        return _report(result, args.prompt)
    for command in result.commands:
        state = "passed" if command.passed else "FAILED"
        detail = f", missing {list(command.missing)}" if command.missing else ""
        print(
            f"  {state}: {shlex.join(command.argv)} (run {command.run}, {command.outcome}, "
            f"exit {command.exit_code}, {command.duration:.2f} s{detail})"
        )
    print(
        f"{shown(prompt, root)}: execution {result.n} "
        f"{'SUCCESS' if result.success else 'FAILURE'}, digest {result.digest[:12]}"
    )
    return 0 if result.success else 1


async def _prompts_rewrite(prompt: Path, root: Path, shown_as: str) -> int:
    entries = await trio.to_thread.run_sync(lambda: rewrite_prompt(prompt, root=root))
    if isinstance(entries, list):
        return _report(entries, shown_as)
    head = entries[-1].digest[:12] if entries else "none"
    print(
        f"{shown(prompt, root)}: rewritten from {len(entries)} recorded execution(s), head {head}"
    )
    return 0


_ACTIONS: dict[tuple[str, str], Callable[[argparse.Namespace], Awaitable[int]]] = {
    ("review", "run"): _review_run,
    ("review", "check"): _review_check,
    ("review", "next"): _review_next,
    ("review", "loop"): _review_loop,
    ("prompts", "record"): _prompts_record,
    ("prompts", "check"): _prompts_check,
}
