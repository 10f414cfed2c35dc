"""The image the container tests run: built once per test session (see container_testing.py)."""

from __future__ import annotations

import pytest
from container_testing import Image, build_image


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return build_image(tmp_path_factory.mktemp("container"))
