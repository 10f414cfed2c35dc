"""Loader and interpreter start-up variables from a request never run code in an allowed command.

The library is real: built here with gcc, its constructor writes a marker when the loader maps
it.  Refused, the marker never appears; allowed by name in the policy file, the same request
runs and the marker appears — so the test can tell a refusal from a library that never loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from ccx_testing import make_config, open_client, start_daemon
from faults_policy_testing import build_preload

from cc_executor.executor.config.server import ServerConfig, with_policy_file
from cc_executor.protocol import ErrorCode

BOUND = 20.0


def policy_config(tmp_path: Path, text: str, **changes: object) -> ServerConfig:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return with_policy_file(make_config(**changes), str(path))


async def test_ld_preload_is_refused_and_the_library_never_loads(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    marker = tmp_path / "preloaded"
    library = build_preload(tmp_path, marker)
    served = await start_daemon(nursery, make_config(allowed_commands=("cat",)))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await client.call_error(
                "execute", argv=["cat", "/dev/null"], env={"LD_PRELOAD": str(library)}
            )
            assert (await client.call("list")) == {"runs": []}
    assert error.code == ErrorCode.POLICY_REFUSED
    assert error.data == {"rule": "env.startup_allow", "variable": "LD_PRELOAD"}
    assert "LD_PRELOAD" in error.message
    assert not marker.exists()


async def test_ld_preload_allowed_by_name_runs(nursery: trio.Nursery, tmp_path: Path) -> None:
    marker = tmp_path / "preloaded"
    library = build_preload(tmp_path, marker)
    config = policy_config(
        tmp_path, '[env]\nstartup_allow = ["LD_PRELOAD"]\n', allowed_commands=("cat",)
    )
    served = await start_daemon(nursery, config)
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["cat", "/dev/null"], env={"LD_PRELOAD": str(library)})
            record = await client.wait_completed(run)
            # Naming one start-up variable allows that one only.
            error = await client.call_error(
                "execute", argv=["cat", "/dev/null"], env={"LD_AUDIT": str(library)}
            )
    assert record.completed is not None
    assert record.completed["exit_code"] == 0
    assert marker.read_text() == "preloaded\n"
    assert error.data == {"rule": "env.startup_allow", "variable": "LD_AUDIT"}


@pytest.mark.parametrize(
    "name",
    [
        "LD_LIBRARY_PATH",
        "DYLD_INSERT_LIBRARIES",
        "BASH_ENV",
        "ENV",
        "BASH_FUNC_cat%%",
        "SHELLOPTS",
        "IFS",
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PYTHONHOME",
        "NODE_OPTIONS",
        "NODE_PATH",
        "PERL5OPT",
        "PERL5LIB",
        "RUBYOPT",
        "RUBYLIB",
        "GCONV_PATH",
        "JAVA_TOOL_OPTIONS",
    ],
)
async def test_every_start_up_variable_is_refused(
    nursery: trio.Nursery, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "ran"
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await client.call_error(
                "execute", argv=["touch", str(marker)], env={name: str(tmp_path)}
            )
    assert error.data == {"rule": "env.startup_allow", "variable": name}
    assert not marker.exists()


async def test_bash_env_reaches_no_script(nursery: trio.Nursery, tmp_path: Path) -> None:
    # The shell family for real: BASH_ENV names a file bash sources before any script.
    marker = tmp_path / "sourced"
    rc = tmp_path / "rc"
    rc.write_text(f"touch '{marker}'\n")
    served = await start_daemon(nursery, make_config(allowed_commands=("bash",)))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await client.call_error(
                "execute", argv=["bash", "-c", "true"], env={"BASH_ENV": str(rc)}
            )
            run = await client.execute(argv=["bash", "-c", "echo clean"])
            record = await client.wait_completed(run)
    assert error.data["rule"] == "env.startup_allow"
    assert bytes(record.stdout) == b"clean\n"
    assert not marker.exists()


async def test_the_claude_clis_own_variables_are_start_up_variables_for_it(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # CLAUDE_ENV_FILE is sourced before every Bash tool command; CLAUDE_CONFIG_DIR relocates
    # the settings (hooks, permissions).  For other programs they are plain names.
    fake = tmp_path / "bin" / "claude"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$CLAUDE_CONFIG_DIR"\n')
    fake.chmod(0o755)
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            for name in ("CLAUDE_CONFIG_DIR", "CLAUDE_ENV_FILE", "CLAUDE_CODE_SHELL_PREFIX"):
                error = await client.call_error(
                    "execute", argv=[str(fake), "-p", "hi"], env={name: str(tmp_path)}
                )
                assert error.data == {"rule": "env.startup_allow", "variable": name}
            run = await client.execute(
                argv=["sh", "-c", 'echo "$CLAUDE_CONFIG_DIR"'], env={"CLAUDE_CONFIG_DIR": "/x"}
            )
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == b"/x\n"
