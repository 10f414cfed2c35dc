"""A package's names loaded on first use (PEP 562), for the packages that re-export many.

A package lists where each name lives and gets its module ``__getattr__`` and ``__dir__``
from ``lazy_exports``; importing the package then costs nothing until a name is used, and a
name, once found, is a plain global.
"""

from collections.abc import Callable, MutableMapping
from importlib import import_module
from typing import Any


def lazy_exports(
    namespace: MutableMapping[str, Any], home: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose ``globals()`` is `namespace`,
    which exports each name of `home` from the module `home` names for it."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value  # found once: later lookups are plain
        return value

    def __dir__() -> list[str]:
        return sorted(home)

    return __getattr__, __dir__
