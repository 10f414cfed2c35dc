"""The wheel installs the three folders under the cc_executor namespace, with ``ccx``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (found,) = out.glob("cc_executor-*.whl")
    return found


def test_wheel_maps_top_level_folders_into_the_namespace(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("protocol", "supervision", "executor"):
        assert f"cc_executor/{package}/py.typed" in names
        # Every module of every (sub)package in the checkout is in the wheel: a subpackage
        # missing from pyproject's package list would silently be left out.
        for module in (ROOT / package).rglob("*.py"):
            assert f"cc_executor/{module.relative_to(ROOT).as_posix()}" in names, module
    # Never the bare top-level names, which are other projects' on PyPI.
    assert not any(name.split("/")[0] in ("protocol", "supervision", "executor") for name in names)
    assert not any(name.startswith("tests/") for name in names)


def test_wheel_declares_the_ccx_console_script(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
    text = archive.read(entry_points).decode()
    assert "ccx = cc_executor.executor.cli:main" in text


def test_wheel_imports_in_a_fresh_environment(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The wheel and its declared runtime dependencies; nothing from this checkout.
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr.decode()
    probe = (
        "import cc_executor.executor.cli, cc_executor.protocol, cc_executor.supervision; "
        "print(cc_executor.protocol.__file__)"
    )
    result = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert str(venv) in result.stdout.decode(), "imported from the wheel, not the checkout"
    ccx = subprocess.run([str(venv / "bin" / "ccx"), "--version"], capture_output=True, timeout=60)
    assert ccx.stdout.decode().startswith("cc-executor ")
