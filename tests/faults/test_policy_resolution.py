"""The allow-list checks the file that runs: argv0 is resolved in the run's cwd, on the run's PATH.

Each test plants `<root>/usr/bin/echo` (or `cat`), a script that leaves a marker, and tries to
reach it through a name the allow-list (`echo`, `cat`) accepts.  The daemon serves from `/`
(monkeypatch.chdir): from there `../../../usr/bin/echo` and `PATH=../../../usr/bin` name the
real /usr/bin/echo, while from the run's cwd `<root>/x/y/z` they name the planted one — the
observed bypass, where the check looked in the daemon's cwd and exec in the run's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio
from ccx_testing import make_config, open_client, start_daemon
from faults_policy_testing import plant

from cc_executor.protocol import ErrorCode

BOUND = 20.0


def real_echo() -> Path:
    """The file `echo` on our PATH really is."""
    echo = shutil.which("echo")
    assert echo is not None
    return Path(os.path.realpath(echo))


def real_path(path: str) -> str:
    return os.path.realpath(path)


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the run's cwd, the marker) with fake echo and cat planted three levels up."""
    monkeypatch.chdir("/")
    root = tmp_path / "root"
    cwd = root / "x" / "y" / "z"
    cwd.mkdir(parents=True)
    marker = tmp_path / "planted-ran"
    plant(root / "usr" / "bin" / "echo", marker)
    plant(root / "usr" / "bin" / "cat", marker)
    return cwd, marker


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"argv": ["../../../usr/bin/echo", "hi"]}, id="relative-argv0"),
        pytest.param({"command": "../../../usr/bin/echo hi"}, id="command-form"),
    ],
)
async def test_a_relative_argv0_is_resolved_in_the_runs_cwd(
    nursery: trio.Nursery, planted: tuple[Path, Path], params: dict[str, object]
) -> None:
    cwd, marker = planted
    served = await start_daemon(nursery, make_config(allowed_commands=("echo", "cat")))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await client.call_error("execute", cwd=str(cwd), **params)
            assert error.code == ErrorCode.POLICY_REFUSED
            assert error.data["rule"] == "allowed_commands"
            # The refusal names the file the run would have executed.
            assert error.data["executable"] == str(cwd.parents[2] / "usr" / "bin" / "echo")
            assert (await client.call("list")) == {"runs": []}
    assert not marker.exists()


async def test_a_relative_path_entry_from_a_request_is_refused(
    nursery: trio.Nursery, planted: tuple[Path, Path]
) -> None:
    cwd, marker = planted
    served = await start_daemon(nursery, make_config(allowed_commands=("echo", "cat")))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            for path in ("../../../usr/bin", "/usr/bin:../../../usr/bin", "/usr/bin::/bin", ""):
                error = await client.call_error(
                    "execute", argv=["echo", "hi"], cwd=str(cwd), env={"PATH": path}
                )
                assert error.code == ErrorCode.POLICY_REFUSED, path
                assert error.data["rule"] == "absolute_path"
                assert error.data["variable"] == "PATH"
                assert "absolute" in error.message
            assert (await client.call("list")) == {"runs": []}
    assert not marker.exists()


async def test_an_absolute_request_path_is_what_the_check_and_exec_both_use(
    nursery: trio.Nursery, planted: tuple[Path, Path]
) -> None:
    cwd, marker = planted
    planted_bin = cwd.parents[2] / "usr" / "bin"
    served = await start_daemon(nursery, make_config(allowed_commands=("echo", "cat")))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await client.call_error(
                "execute", argv=["echo", "hi"], cwd=str(cwd), env={"PATH": str(planted_bin)}
            )
            assert error.data["rule"] == "allowed_commands"
            assert error.data["executable"] == str(planted_bin / "echo")
            run = await client.execute(
                argv=["echo", "real"], cwd=str(cwd), env={"PATH": "/usr/bin"}
            )
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == b"real\n"
    assert not marker.exists()


async def test_a_relative_argv0_that_names_an_allowed_file_runs_it(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From the daemon's cwd the name leads nowhere; from the run's cwd it is the real echo.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    real = real_echo()
    served = await start_daemon(nursery, make_config(allowed_commands=("echo",)))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await client.execute(argv=[f"./{real.name}", "found"], cwd=str(real.parent))
            record = await client.wait_completed(run)
            started = next(
                n["params"] for n in client.notifications if n["method"] == "process.started"
            )
    assert bytes(record.stdout) == b"found\n"
    # The child's argv[0] is the request's; only the file exec'd is the resolved one.
    assert started["argv"][0] == f"./{real.name}"


async def test_the_shell_opt_in_resolves_its_commands_on_an_absolute_path(
    nursery: trio.Nursery, planted: tuple[Path, Path]
) -> None:
    # With the shell allowed (and sh on the allow-list) the shell runs whatever it is told;
    # but a request still cannot hand it a relative PATH that reaches planted programs.
    cwd, marker = planted
    config = make_config(allowed_commands=("sh", "echo", "cat"), allow_shell=True)
    served = await start_daemon(nursery, config)
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await client.call_error(
                "execute",
                command="cat /dev/null",
                shell=True,
                cwd=str(cwd),
                env={"PATH": "../../../usr/bin"},
            )
            assert error.data["rule"] == "absolute_path"
            run = await client.execute(
                command="cat /dev/null; echo shell", shell=True, cwd=str(cwd)
            )
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == b"shell\n"
    assert not marker.exists()


async def test_the_shell_opt_in_is_a_command_like_any_other(nursery: trio.Nursery) -> None:
    # `shell: true` runs /bin/sh, checked by its real path: allowing the shell is not enough.
    config = make_config(allowed_commands=("echo",), allow_shell=True)
    served = await start_daemon(nursery, config)
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await client.call_error("execute", command="echo hi", shell=True)
    assert error.data["rule"] == "allowed_commands"
    assert error.data["command"] == "/bin/sh"
    assert error.data["executable"] == real_path("/bin/sh")
