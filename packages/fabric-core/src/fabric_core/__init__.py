"""fabric-core: the fast, lightweight way to scale PyTorch training without boilerplate.

``from fabric_core import Fabric`` and follow the Lightning Fabric API. Importing this package is
cheap: the API is imported on first attribute access and plugins are discovered on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabric_core.__about__ import __version__

if TYPE_CHECKING:
    from fabric_core.fabric import Fabric
    from fabric_core.utilities.seed import seed_everything

__all__ = ["Fabric", "__version__", "seed_everything"]

_LAZY = {
    "Fabric": "fabric_core.fabric",
    "seed_everything": "fabric_core.utilities.seed",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fabric_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
