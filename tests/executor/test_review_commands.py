"""`ccx review run|check|next` and `ccx prompts record|check` through pipes, with a live daemon."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import orjson
import trio
from ccx_testing import Served

TIMEOUT = 120
CCX = [sys.executable, "-m", "cc_executor.executor"]
TEMPLATE = Path(__file__).parents[2] / "prompts" / "SELF_IMPROVING_PROMPT_TEMPLATE.md"


async def ccx(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(TIMEOUT):
        return await trio.run_process(
            [*CCX, *args], capture_stdout=True, capture_stderr=True, check=False, cwd=cwd
        )


async def test_review_run_executes_every_usage_demo(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "log.md"
    done = await ccx("review", "run", "--url", served.url, "--out", str(out))
    assert done.returncode == 0, done.stderr
    log = out.read_text()
    assert "3/3 usage demos passed" in log
    for component in ("protocol", "supervision", "executor"):
        assert f"`python -m cc_executor.{component}.usage`" in log
        assert f"`USAGE_{component}_" in log
    assert "MISSING" not in log


async def test_review_run_reports_a_missing_daemon(tmp_path: Path) -> None:
    done = await ccx("review", "run", "--url", "ws://127.0.0.1:9/")
    assert done.returncode == 1
    assert done.stderr.startswith(b"ccx: no cc-executor daemon at ws://127.0.0.1:9/")


def prompt_with(commands: str) -> str:
    head, _, rest = TEMPLATE.read_text().partition("```verify\n")
    _, _, tail = rest.partition("```\n")
    return head + "```verify\n" + commands + "```\n" + tail


async def test_prompts_record_derives_the_metrics(served: Served, tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / TEMPLATE.name).write_text(TEMPLATE.read_text())
    prompt = tmp_path / "prompts" / "echo_check.md"
    prompt.write_text(
        prompt_with("python -c \"print('all good')\"\nexpect: all good\nsh -c 'exit 0'\n")
    )
    args = ("prompts", "record", "--url", served.url, "--root", str(tmp_path), str(prompt))
    first = await ccx(*args)
    assert first.returncode == 0, first.stderr
    assert b"execution 1 SUCCESS" in first.stdout
    text = prompt.read_text()
    assert "- **Success/Failure Ratio**: 1:0" in text
    assert "- **Total Executions**: 1" in text

    # The expectation fails now: a failure is recorded, and ccx says so.
    prompt.write_text(text.replace("expect: all good", "expect: something else"))
    second = await ccx(*args)
    assert second.returncode == 1
    assert b"missing ['something else']" in second.stdout
    text = prompt.read_text()
    assert "- **Success/Failure Ratio**: 1:1" in text
    record = (tmp_path / "prompts" / ".records" / "echo_check.jsonl").read_text().splitlines()
    assert [orjson.loads(line)["success"] for line in record] == [True, False]

    check = await ccx("prompts", "check", "--root", str(tmp_path))
    assert check.returncode == 0, check.stdout
    # A hand-edited count is caught, with where and what the record says.
    prompt.write_text(text.replace("Ratio**: 1:1", "Ratio**: 2:0"))
    check = await ccx("prompts", "check", "--root", str(tmp_path))
    assert check.returncode == 1
    assert check.stdout.decode().startswith(
        "prompts/echo_check.md:12: Success/Failure Ratio says '2:0' but the record says '1:1'"
    )


async def test_a_stale_prompt_is_repaired_by_rewrite_only(served: Served, tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / TEMPLATE.name).write_text(TEMPLATE.read_text())
    prompt = tmp_path / "prompts" / "echo_check.md"
    stale = prompt_with("sh -c 'exit 0'\n")
    prompt.write_text(stale)
    prompt.chmod(0o644)
    recorded = await ccx(
        "prompts", "record", "--url", served.url, "--root", str(tmp_path), str(prompt)
    )
    assert recorded.returncode == 0, recorded.stderr
    record = tmp_path / "prompts" / ".records" / "echo_check.jsonl"
    entries = record.read_text()

    # The record was appended but the prompt's rewrite was lost: the metrics are stale.
    prompt.write_text(stale)
    check = await ccx("prompts", "check", "--root", str(tmp_path))
    assert check.returncode == 1
    assert b"Success/Failure Ratio says '0:0' but the record says '1:0'" in check.stdout

    # --rewrite-only re-applies the record; it runs nothing, so it needs no daemon.
    repair = await ccx(
        "prompts", "record", "--rewrite-only", "--url", "ws://127.0.0.1:9/",
        "--root", str(tmp_path), str(prompt),
    )  # fmt: skip
    assert repair.returncode == 0, repair.stderr
    assert repair.stdout.decode() == (
        "prompts/echo_check.md: rewritten from 1 recorded execution(s), "
        f"head {orjson.loads(entries)['digest'][:12]}\n"
    )
    assert record.read_text() == entries
    check = await ccx("prompts", "check", "--root", str(tmp_path))
    assert check.returncode == 0, check.stdout
    assert "- **Success/Failure Ratio**: 1:0" in prompt.read_text()
    # Replaced through a temporary file, the prompt keeps its mode and leaves nothing beside it.
    assert stat.S_IMODE(prompt.stat().st_mode) == 0o644
    assert sorted(p.name for p in prompt.parent.iterdir()) == [
        ".records",
        TEMPLATE.name,
        "echo_check.md",
    ]


async def test_review_check_and_next(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews"
    reviews.mkdir()
    (reviews / "001_wire_framing_fixes.json").write_text("{}")
    (reviews / "notes.txt").write_text("")
    done = await ccx("review", "check", "--root", str(tmp_path), str(reviews))
    assert done.returncode == 1
    assert done.stdout.decode().splitlines() == [
        "reviews/notes.txt:1: file name does not follow the naming rule (expected "
        "{SEQUENCE}_{FOCUS_AREA}_{TYPE}.{ext}, e.g. 001_websocket_backpressure_fixes.json)",
        "reviews/001_wire_framing_fixes.json:1: fixes without feedback (expected "
        "001_wire_framing_review_feedback.md beside it)",
    ]
    done = await ccx("review", "next", "--root", str(tmp_path), "pump_backpressure")
    assert done.stdout.decode().splitlines() == [
        f"{reviews}/002_pump_backpressure_review_feedback.md",
        f"{reviews}/002_pump_backpressure_fixes.json",
    ]
    done = await ccx("review", "next", "--root", str(tmp_path), "fixes")
    assert done.returncode == 1
    assert b"is not snake_case of at least two words" in done.stderr
