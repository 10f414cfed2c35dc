"""The real Claude Code CLI for the tests: installed from npm into a cache directory on demand.

A fresh machine gets the CLI the first time the Claude tests run (`./dev check`): the
session fixture runs `npm install --prefix .cache/claude-code @anthropic-ai/claude-code`,
bounded by a timeout.  Without npm or the network, the tests are skipped locally with the
install command in the reason; in CI (CI=true) a missing CLI fails them instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = "@anthropic-ai/claude-code"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "claude-code"
BINARY = CACHE / "node_modules" / ".bin" / "claude"
INSTALL_COMMAND = f"npm install --prefix {CACHE} {PACKAGE}"
INSTALL_TIMEOUT = 300.0
VERSION_TIMEOUT = 60.0

# The environment that runs the CLI fully offline (notes/claude-code-offline.md); HOME and
# CLAUDE_CONFIG_DIR are added per test, ANTHROPIC_BASE_URL and the key by the daemon's config.
OFFLINE_ENV = {
    "TERM": "dumb",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
}


def _usable(binary: Path) -> bool:
    if not binary.exists():
        return False
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=VERSION_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and b"Claude Code" in done.stdout


def _install() -> str:
    """Run npm; return what went wrong, or "" on success."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", PACKAGE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"npm install took more than {INSTALL_TIMEOUT:.0f} s"
    if done.returncode != 0:
        return f"npm install failed: {done.stderr.decode(errors='replace')[-2000:]}"
    package = CACHE / "node_modules" / PACKAGE
    if not _usable(BINARY) and (package / "install.cjs").exists():
        # The postinstall step may be skipped by npm's script policy: run it ourselves.
        node = shutil.which("node") or "node"
        subprocess.run(
            [node, "install.cjs"],
            cwd=package,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    return ""


def claude_cli() -> Path:
    """The CLI's path, installing it first if needed; skips (or fails in CI) without it."""
    if _usable(BINARY):
        return BINARY
    problem = _install() or ("" if _usable(BINARY) else "the installed CLI does not run")
    if not problem:
        return BINARY
    reason = f"the Claude Code CLI is missing ({problem}); install it with: {INSTALL_COMMAND}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)
