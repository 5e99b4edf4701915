"""Warning categories of fabric-core and switches for them.

``PossibleUserWarning`` marks a warning that may be a false positive for your program (a slow
``num_workers`` setting that you chose on purpose, say); :func:`disable_possible_user_warnings`
silences them. The deprecation category lives beside the rank-zero helpers that emit it
(:class:`~fabric_core.utilities.rank_zero.FabricDeprecationWarning`).
"""

from __future__ import annotations

import os
import warnings

from fabric_core.utilities.rank_zero import FabricDeprecationWarning, LightningDeprecationWarning

__all__ = [
    "FabricDeprecationWarning",
    "LightningDeprecationWarning",
    "PossibleUserWarning",
    "disable_possible_user_warnings",
]


class PossibleUserWarning(UserWarning):
    """A warning about something that is often a mistake but may be what you meant.

    Example::

        rank_zero_warn("the dataloader has no workers", category=PossibleUserWarning)
    """


def disable_possible_user_warnings(module: str = "") -> None:
    """Ignore :class:`PossibleUserWarning` from every module, or from those whose name matches ``module``.

    ``module`` is a regular expression matched against the start of the warning's module name, as in
    :func:`warnings.filterwarnings`. For other categories, call ``warnings.filterwarnings`` yourself.

    Example::

        disable_possible_user_warnings()  # all of them
        disable_possible_user_warnings("my_project.data")  # only those raised from my_project.data...
    """
    warnings.filterwarnings("ignore", category=PossibleUserWarning, module=module)


# Lightning's switch: POSSIBLE_USER_WARNINGS=0 (or off) silences them for the whole run. Read when this
# module is first imported, which every emitter of a PossibleUserWarning does before emitting one.
if os.environ.get("POSSIBLE_USER_WARNINGS", "").lower() in ("0", "off"):
    disable_possible_user_warnings()
