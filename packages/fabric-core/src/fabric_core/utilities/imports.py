"""Cheap package imports: a package's public names are imported from their modules on first access.

A plugin's ``__init__.py`` should cost almost nothing to import, because ``fabric plugins`` and
discovery import it. ``lazy_exports`` gives the package a module-level ``__getattr__`` and
``__dir__`` (PEP 562) that import a name's module the first time the name is read::

    # my_plugin/__init__.py
    from typing import TYPE_CHECKING

    from fabric_core.utilities.imports import lazy_exports

    if TYPE_CHECKING:  # type checkers and IDEs see the real names
        from my_plugin.strategy import MyStrategy

    __all__ = ["MyStrategy"]
    __getattr__, __dir__ = lazy_exports(__name__, {"MyStrategy": "my_plugin.strategy"})

``from my_plugin import MyStrategy`` then imports ``my_plugin.strategy`` at that moment, and
``import my_plugin`` alone imports neither it nor torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` that import ``exports[name]`` when ``name`` is first read.

    Args:
        package: The importing package's ``__name__``; it must already be in ``sys.modules`` (it is,
            while its ``__init__.py`` runs).
        exports: Maps each public name to the module that defines it under that same name.

    The value read is stored in the package's namespace, so each module is imported once and later
    reads are plain attribute lookups. A name not in ``exports`` raises ``AttributeError`` as usual,
    so ``hasattr`` and ``from package import missing`` behave as for any module.

    Example::

        __getattr__, __dir__ = lazy_exports(__name__, {"CSVLogger": "fabric_loggers.csv_logs"})
    """
    if not isinstance(package, str) or package not in sys.modules:
        raise ValueError(
            f"lazy_exports(package={package!r}): expected the name of a package being imported; pass __name__ "
            "from the package's __init__.py."
        )
    if not isinstance(exports, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in exports.items()
    ):
        raise TypeError(
            f"lazy_exports({package!r}, exports={exports!r}): expected a mapping of public names to module names, "
            'e.g. {"MyStrategy": "my_plugin.strategy"}.'
        )
    exports = dict(exports)
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
