"""Every name a lazily loading package exports resolves, to the object its home module has."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

PACKAGES = ("cc_executor.protocol", "cc_executor.protocol.claude", "cc_executor.executor.client")


@pytest.mark.parametrize("name", PACKAGES)
def test_each_exported_name_resolves_to_its_home(name: str) -> None:
    package: ModuleType = importlib.import_module(name)
    home: dict[str, str] = package._HOME
    assert sorted(package.__all__) == sorted(home) == dir(package)
    # Every home module loaded first: a submodule's import binds its name on the package, so an
    # export named like a submodule would then be the module, not the object.
    homes = {module: importlib.import_module(module) for module in set(home.values())}
    for export, module in home.items():
        assert getattr(package, export) is getattr(homes[module], export)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        package.not_a_name  # noqa: B018
