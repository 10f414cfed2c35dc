"""`ccx review loop`: reviewer, validation, implementer, usage demos — until a clean review.

Theory of operation: one round is
  1. the usage demos' execution log (the previous round's re-run, or a fresh run);
  2. a review request naming the next free sequence number NNN;
  3. the reviewer command, run through the daemon, which must write
     reviews/NNN_<focus_area>_review_feedback.md and reviews/NNN_<focus_area>_fixes.json;
  4. validation of that pair — a reviewer that writes nothing, or anything invalid, ends the
     loop with the problems (a loop fed invalid fixes would only spread them);
  5. no fixes: a clean review, the loop ends; else the implementer command, through the
     daemon, once per fix;
  6. the usage demos again, whose log feeds the next round.
It stops on a clean review, an invalid review, a failed reviewer, or after `rounds` rounds.
Every round's working files — request, execution logs, reviewer and implementer output (stdout
in `<name>.log`, stderr in `<name>.stderr.log`), each fix handed over, a summary — stay in
reviews/rounds/NNN/, beside the review itself.

Commands get their inputs both ways: as placeholders in their argv ({request},
{execution_log}, {sequence}, {reviews}, {round}; for the implementer also {fix}, {fix_id},
{feedback}, {fixes}) and as REVIEW_* environment variables (REVIEW_REQUEST, REVIEW_EXECUTION_LOG,
REVIEW_SEQUENCE, REVIEW_DIR, REVIEW_ROUND; REVIEW_FIX_FILE, REVIEW_FIX_ID, REVIEW_FEEDBACK,
REVIEW_FIXES) — CCX_* names are reserved by the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import attrs
import orjson
import trio

from cc_executor.executor.client import Connection
from cc_executor.executor.review.artifacts import read_review_pair, shown
from cc_executor.executor.review.demos import run_demos
from cc_executor.executor.review.fixes import FixesFile
from cc_executor.executor.review.names import ArtifactName, next_sequence, parse_name
from cc_executor.executor.review.problems import Problem
from cc_executor.executor.review.runs import Execution, execute_through, stderr_log

Outcome = Literal["clean", "invalid", "reviewer_failed", "rounds_exhausted"]


@attrs.frozen
class LoopSettings:
    reviewer: tuple[str, ...]
    implementer: tuple[str, ...]
    root: Path
    reviews: Path
    rounds: int = 3
    timeout: float = 3600.0  # seconds per reviewer or implementer run, enforced by the daemon
    demos: tuple[tuple[str, tuple[str, ...]], ...] | None = None  # None: the usage demos


@attrs.frozen
class RoundReport:
    sequence: int
    review_id: str | None
    reviewer: Execution
    problems: tuple[Problem, ...]
    implementer: tuple[Execution, ...]
    demos_passed: bool | None


@attrs.frozen
class LoopResult:
    outcome: Outcome
    rounds: tuple[RoundReport, ...]

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.rounds[-1].problems if self.rounds else ()


def substitute(argv: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """Replace `{name}` placeholders; other braces are left alone."""
    out = []
    for arg in argv:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return tuple(out)


def request_text(sequence: int, reviews: str, execution_log: str, previous: list[str]) -> str:
    nnn = f"{sequence:03d}"
    earlier = ", ".join(previous) if previous else "none"
    return f"""# Review request {nnn}

Review this repository as the reviewer of the cc-executor review protocol (docs/review.md).

1. Read the execution log of every usage demo, run through cc-executor just now:
   {execution_log}
2. Write `{reviews}/{nnn}_<focus_area>_review_feedback.md` — sections, in order: Summary
   (at most 3 lines), Detailed Findings (a table `# | Location | Severity | Description |
   Explicit Fix Directive`, severities BLOCKER / MAJOR / MINOR / NIT, locations
   `path/file.py:LINE` that exist), Usage Function Execution Log (paste the log), Scorecard
   (`Area | Score`, 0-10), Claude-Fix Checklist (`- [ ] #N ...` per finding), Recommended
   Next Action. The focus area names the technical challenge, in snake_case.
3. Write `{reviews}/{nnn}_<focus_area>_fixes.json`: `review_id` ("{nnn}_<focus_area>"),
   `component`, `date` (YYYY-MM-DD), `fixes[]` with one fix per finding: `id` (the finding's
   number), `severity` (critical for BLOCKER, major for MAJOR, minor for MINOR and NIT),
   `file`, `line` (the finding's location), `issue`, `fix`, `verification`.
4. No findings left? Write both files anyway, with an empty table and `"fixes": []`:
   that is a clean review, and it ends the loop.

Earlier reviews: {earlier}. `ccx review check` validates what you wrote.
"""


async def _write(path: Path, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    await trio.Path(path).write_bytes(raw)


async def _artifact_names(folder: Path) -> list[str]:
    return sorted(p.name for p in await trio.Path(folder).iterdir())


async def run_loop(conn: Connection, settings: LoopSettings) -> LoopResult:
    reviews, root = settings.reviews, settings.root
    await trio.Path(reviews).mkdir(parents=True, exist_ok=True)
    reports: list[RoundReport] = []
    log_text: str | None = None
    for round_number in range(1, settings.rounds + 1):
        before = await _artifact_names(reviews)
        sequence = next_sequence(before)
        nnn = f"{sequence:03d}"
        folder = reviews / "rounds" / nnn
        await trio.Path(folder).mkdir(parents=True, exist_ok=True)
        if log_text is None:
            log_text, _ = await run_demos(conn, cwd=str(root), demos=settings.demos)
        execution_log = folder / "execution_log.md"
        await _write(execution_log, log_text)
        previous = [
            n.removesuffix("_review_feedback.md")
            for n in before
            if n.endswith("_review_feedback.md")
        ]
        request = folder / "request.md"
        await _write(
            request,
            request_text(sequence, shown(reviews, root), shown(execution_log, root), previous),
        )
        values = {
            "request": str(request),
            "execution_log": str(execution_log),
            "sequence": nnn,
            "reviews": str(reviews),
            "round": str(round_number),
        }
        env = {
            "REVIEW_DIR" if k == "reviews" else f"REVIEW_{k.upper()}": v for k, v in values.items()
        }
        reviewer = await execute_through(
            conn,
            substitute(settings.reviewer, values),
            cwd=str(root),
            env=env,
            timeout=settings.timeout,
            log=folder / "reviewer.log",
        )
        if not reviewer.ok:
            problem = Problem(
                shown(stderr_log(folder / "reviewer.log"), root),
                1,
                f"the reviewer ended {reviewer.outcome} with exit code "
                f"{reviewer.exit_code} (expected exit code 0)",
            )
            reports.append(RoundReport(sequence, None, reviewer, (problem,), (), None))
            await _summary(folder, reports[-1])
            return LoopResult("reviewer_failed", tuple(reports))

        found, fixes, problems = await _reviewer_output(reviews, root, before, sequence)
        if found is None or fixes is None or problems:
            reports.append(
                RoundReport(
                    sequence,
                    None if found is None else found.review_id,
                    reviewer,
                    tuple(problems),
                    (),
                    None,
                )
            )
            await _write(folder / "validation.txt", "".join(f"{p}\n" for p in problems))
            await _summary(folder, reports[-1])
            return LoopResult("invalid", tuple(reports))

        feedback = reviews / attrs.evolve(found, type="review_feedback").file_name()
        fixes_path = reviews / attrs.evolve(found, type="fixes").file_name()
        if not fixes.fixes:
            reports.append(RoundReport(sequence, found.review_id, reviewer, (), (), None))
            await _summary(folder, reports[-1])
            return LoopResult("clean", tuple(reports))

        implementer_runs: list[Execution] = []
        for fix in fixes.fixes:
            fix_file = folder / f"fix-{fix.id}.json"
            await _write(
                fix_file,
                orjson.dumps(
                    {"review_id": found.review_id, **attrs.asdict(fix)},
                    option=orjson.OPT_INDENT_2,
                ),
            )
            fix_values = {
                **values,
                "fix": str(fix_file),
                "fix_id": str(fix.id),
                "feedback": str(feedback),
                "fixes": str(fixes_path),
            }
            fix_env = {
                **env,
                "REVIEW_FIX_FILE": str(fix_file),
                "REVIEW_FIX_ID": str(fix.id),
                "REVIEW_FEEDBACK": str(feedback),
                "REVIEW_FIXES": str(fixes_path),
            }
            implementer_runs.append(
                await execute_through(
                    conn,
                    substitute(settings.implementer, fix_values),
                    cwd=str(root),
                    env=fix_env,
                    timeout=settings.timeout,
                    log=folder / f"implementer-{fix.id}.log",
                )
            )
        log_text, passed = await run_demos(conn, cwd=str(root), demos=settings.demos)
        await _write(folder / "execution_log_after.md", log_text)
        reports.append(
            RoundReport(sequence, found.review_id, reviewer, (), tuple(implementer_runs), passed)
        )
        await _summary(folder, reports[-1])
    return LoopResult("rounds_exhausted", tuple(reports))


async def _reviewer_output(
    reviews: Path, root: Path, before: list[str], sequence: int
) -> tuple[ArtifactName | None, FixesFile | None, list[Problem]]:
    """The review the reviewer wrote for `sequence`, validated: its name, its fixes, problems."""
    after = await _artifact_names(reviews)
    new = [n for n in after if n not in before and not n.startswith(".") and n != "rounds"]
    problems: list[Problem] = []
    names: list[ArtifactName] = []
    for name in new:
        parsed = parse_name(name)
        if isinstance(parsed, Problem):
            problems.append(Problem(shown(reviews / name, root), 1, parsed.message))
        elif parsed.sequence != sequence:
            problems.append(
                Problem(
                    shown(reviews / name, root),
                    1,
                    f"sequence {parsed.sequence:03d} (expected {sequence:03d}, "
                    "the sequence of this review request)",
                )
            )
        else:
            names.append(parsed)
    feedback = [n for n in names if n.type == "review_feedback"]
    if len(feedback) != 1:
        where = shown(reviews, root)
        problems.append(
            Problem(
                where,
                1,
                f"the reviewer wrote {len(feedback)} "
                f"{sequence:03d}_*_review_feedback.md files (expected 1)",
            )
        )
        return None, None, problems
    found = feedback[0]
    fixes_path = reviews / attrs.evolve(found, type="fixes").file_name()
    fixes, more = await trio.to_thread.run_sync(
        read_review_pair, reviews / found.file_name(), fixes_path, root
    )
    return found, fixes, problems + more


async def _summary(folder: Path, report: RoundReport) -> None:
    def execution(e: Execution) -> dict[str, object]:
        return {
            "argv": list(e.argv),
            "run": e.run,
            "outcome": e.outcome,
            "exit_code": e.exit_code,
            "duration": round(e.duration, 3),
        }

    await _write(
        folder / "round.json",
        orjson.dumps(
            {
                "sequence": f"{report.sequence:03d}",
                "review_id": report.review_id,
                "reviewer": execution(report.reviewer),
                "problems": [str(p) for p in report.problems],
                "implementer": [execution(e) for e in report.implementer],
                "demos_passed_after": report.demos_passed,
            },
            option=orjson.OPT_INDENT_2,
        )
        + b"\n",
    )
