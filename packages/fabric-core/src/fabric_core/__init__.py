"""fabric-core: the fast, lightweight way to scale PyTorch training without boilerplate.

``from fabric_core import Fabric`` and follow the Lightning Fabric API. Importing this package is
cheap: the API is imported on first attribute access and plugins are discovered on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.__about__ import __version__
from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.fabric import Fabric
    from fabric_core.utilities.seed import seed_everything
    from fabric_core.utilities.warnings import disable_possible_user_warnings  # noqa: F401 - importable, not in __all__ (as in Lightning)
    from fabric_core.wrappers import is_wrapped

__all__ = ["Fabric", "__version__", "is_wrapped", "seed_everything"]

# The same names as ``lightning.fabric`` (disable_possible_user_warnings is importable there too).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Fabric": "fabric_core.fabric",
        "seed_everything": "fabric_core.utilities.seed",
        "is_wrapped": "fabric_core.wrappers",
        "disable_possible_user_warnings": "fabric_core.utilities.warnings",
    },
)
