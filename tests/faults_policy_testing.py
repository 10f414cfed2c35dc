"""Helpers for the policy fault tests: planted programs and a real LD_PRELOAD library.

Each helper makes something that leaves a marker file when it runs, so a test can tell for
certain whether the policy let it run (the marker exists) or not.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PRELOAD_SOURCE = r"""
#include <fcntl.h>
#include <unistd.h>

__attribute__((constructor)) static void leave_marker(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        write(fd, "preloaded\n", 10);
        close(fd);
    }
}
"""


def plant(program: Path, marker: Path) -> Path:
    """An executable shell script at `program` that creates `marker` when it runs."""
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    program.chmod(0o755)
    return program


def build_preload(directory: Path, marker: Path) -> Path:
    """A shared object whose constructor creates `marker`: what LD_PRELOAD would inject.

    Skips the test when no C compiler is installed (`apt-get install gcc`).
    """
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("needs a C compiler to build the preload library: apt-get install gcc")
    source = directory / "evil.c"
    source.write_text(PRELOAD_SOURCE)
    library = directory / "evil.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(library), str(source)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return library
