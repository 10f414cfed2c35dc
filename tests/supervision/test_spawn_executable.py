"""`locate` finds what exec would run, and a spec's `executable` is the file that runs.

The symlink tests are the check-then-exec race made deterministic: the link is resolved (the
check), swapped to a planted script (the attacker's move in the window), and then spawned.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.outcome import Exited
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.spawn import ResourceLimits, SpawnSpec, find_prlimit, locate
from cc_executor.supervision.testing import Recorder, run_to_completion

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def executable(path: Path, text: str = "#!/bin/sh\necho planted\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def real(name: str) -> str:
    found = shutil.which(name)
    assert found is not None
    return os.path.realpath(found)


def test_a_name_with_a_slash_is_found_from_the_given_cwd(tmp_path: Path) -> None:
    tool = executable(tmp_path / "a" / "tool")
    (tmp_path / "b").mkdir()
    assert locate("../a/tool", str(tmp_path / "b"), ENV) == str(tool)
    assert locate("./tool", str(tmp_path / "a"), ENV) == str(tool)
    assert locate("../a/tool", str(tmp_path / "a"), ENV) == str(tool)
    assert locate("./tool", str(tmp_path / "b"), ENV) is None


def test_path_entries_relative_and_empty_are_searched_from_the_cwd(tmp_path: Path) -> None:
    tool = executable(tmp_path / "bin" / "tool")
    assert locate("tool", str(tmp_path), {"PATH": "bin"}) == str(tool)
    assert locate("tool", str(tmp_path / "bin"), {"PATH": ""}) == str(tool)
    assert locate("tool", str(tmp_path / "bin"), {"PATH": "/nowhere::/neither"}) == str(tool)
    assert locate("tool", str(tmp_path), {"PATH": str(tmp_path / "bin")}) == str(tool)
    assert locate("tool", str(tmp_path), {"PATH": "/nowhere"}) is None


def test_the_first_executable_regular_file_wins_and_links_are_resolved(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "tool").write_text("not executable")
    (tmp_path / "second" / "tool").mkdir(parents=True)  # a directory of that name
    tool = executable(tmp_path / "third" / "real-tool")
    (tmp_path / "fourth").mkdir()
    (tmp_path / "fourth" / "tool").symlink_to(tool)
    path = os.pathsep.join(str(tmp_path / d) for d in ("first", "second", "fourth"))
    assert locate("tool", None, {"PATH": path}) == str(tool)


def test_without_path_exec_searches_the_default(tmp_path: Path) -> None:
    assert locate("sh", str(tmp_path), {}) == locate("sh", str(tmp_path), {"PATH": os.defpath})
    assert locate("sh", str(tmp_path), {}) is not None


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(None, id="plain"),
        pytest.param(
            ResourceLimits(open_files=64),
            id="prlimit",
            marks=pytest.mark.skipif(find_prlimit() is None, reason="prlimit missing"),
        ),
    ],
)
async def test_a_symlink_swapped_after_the_check_does_not_change_what_runs(
    config: SupervisionConfig,
    registry: RunRegistry,
    run_id: Callable[[], str],
    tmp_path: Path,
    resources: ResourceLimits | None,
) -> None:
    link = tmp_path / "bin" / "echo"
    link.parent.mkdir()
    link.symlink_to(real("echo"))
    checked = locate("echo", None, {"PATH": str(link.parent)})
    assert checked == real("echo")
    planted = executable(tmp_path / "planted")
    link.unlink()
    link.symlink_to(planted)
    spec = SpawnSpec(
        ("echo", "the real echo"),
        {"PATH": str(link.parent)},
        run_id(),
        executable=checked,
        resources=resources,
    )
    recorder = Recorder()
    with trio.fail_after(20):
        outcome = await run_to_completion(spec, config, registry, recorder)
    assert outcome == Exited(0)
    assert recorder.output() == b"the real echo\n"


async def test_argv0_stays_as_given(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    spec = SpawnSpec(("any-name", "-c", 'echo "$0"'), ENV, run_id(), executable=real("sh"))
    recorder = Recorder()
    with trio.fail_after(20):
        await run_to_completion(spec, config, registry, recorder)
    assert recorder.output() == b"any-name\n"


# -- locate agrees with exec's own search ----------------------------------------------------

DIRS = ("d0", "d1", "d2")
# What a directory holds under the name "tool": nothing, a script, a file without the x bit,
# or a directory.
CONTENTS = st.sampled_from(("absent", "script", "not-executable", "directory"))
ENTRIES = st.sampled_from(
    ("", ".", "d0", "d1", "d2", "../d0", "/nonexistent", "{base}/d0", "{base}/d1", "{base}/d2")
)
PROGRAMS = st.sampled_from(("tool", "./tool", "d1/tool", "../d2/tool", "{base}/d0/tool"))


def _layout(base: Path, contents: tuple[str, ...]) -> None:
    for name, content in zip(DIRS, contents, strict=True):
        directory = base / name
        directory.mkdir()
        tool = directory / "tool"
        if content == "script":
            executable(tool, f"#!/bin/sh\necho {name}\n")
        elif content == "not-executable":
            tool.write_text(f"#!/bin/sh\necho {name}\n")
            tool.chmod(0o644)
        elif content == "directory":
            tool.mkdir()


@settings(max_examples=60, deadline=None)
@given(
    contents=st.tuples(CONTENTS, CONTENTS, CONTENTS),
    entries=st.lists(ENTRIES, max_size=4),
    program=PROGRAMS,
    cwd=st.sampled_from(DIRS),
)
def test_locate_finds_the_file_exec_runs(
    contents: tuple[str, str, str], entries: list[str], program: str, cwd: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        _layout(base, contents)
        env = {"PATH": os.pathsep.join(entries).replace("{base}", tmp)}
        argv0 = program.replace("{base}", tmp)
        found = locate(argv0, str(base / cwd), env)
        try:
            ran = subprocess.run(
                [argv0], cwd=base / cwd, env=env, capture_output=True, timeout=10, check=True
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            assert found is None
        else:
            assert found is not None
            assert ran.stdout.decode().strip() == Path(found).parent.name
