"""The daemon's start-up log says what its policy does, read from the policy object itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import trio
from ccx_testing import run_daemon


def logged(lines: list[str], event: str) -> list[dict[str, Any]]:
    records = [orjson.loads(line) for line in lines if line.startswith("{")]
    return [record for record in records if record.get("event") == event]


async def test_the_start_up_log_summarises_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'cwd_roots = ["{tmp_path}"]\n'
        '[commands.echo]\nflags.forbid = ["-e"]\n'
        "[commands.rm]\nallowed = false\n"
        "[commands.no-such-command-ccx]\n"
        '[env]\nrequest_allow = ["APP_*"]\nstartup_allow = ["LD_LIBRARY_PATH"]\n'
        "[resources]\nprocesses = 512\n"
    )
    with trio.fail_after(30):
        async with run_daemon("--policy", str(policy)) as daemon:
            lines = list(daemon.stderr_lines)
    (listening,) = logged(lines, "daemon.listening")
    summary = listening["policy"]
    # Not "any": the [commands] table refuses what it does not name.
    assert summary["unlisted_commands"] == "refused"
    assert [entry.split("=")[0] for entry in summary["allowed"]] == ["echo"]
    assert summary["refused"] == ["rm"]
    assert summary["flag_rules"] == ["echo"]
    assert summary["not_found"] == ["no-such-command-ccx"]
    assert summary["shell"] == "refused"
    assert summary["cwd_roots"] == [str(tmp_path)]
    assert summary["request_env"] == ["APP_*"]
    assert summary["startup_env_allowed"] == ["LD_LIBRARY_PATH"]
    assert summary["rlimits"] == ["--nproc=512:512"]
    warnings = logged(lines, "policy.nproc_ignored_as_root")
    if os.geteuid() == 0:
        # The kernel ignores RLIMIT_NPROC for root: the operator is told at start.
        assert [w["processes"] for w in warnings] == [512]
        assert warnings[0]["level"] == "warning"
    else:
        assert warnings == []


async def test_an_allow_list_from_flags_is_summarised_too(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with run_daemon("--allow", "echo", "--allow", "cat") as daemon:
            lines = list(daemon.stderr_lines)
    (listening,) = logged(lines, "daemon.listening")
    summary = listening["policy"]
    assert summary["unlisted_commands"] == "refused"
    assert sorted(entry.split("=")[0] for entry in summary["allowed"]) == ["cat", "echo"]
    assert summary["cwd_roots"] == "anywhere"
    assert summary["request_env"] == "any"
    assert logged(lines, "policy.nproc_ignored_as_root") == []
