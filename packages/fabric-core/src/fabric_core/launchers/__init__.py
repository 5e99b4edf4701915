"""Launchers: how the processes of a multi-process run are started.

Importing this package is cheap (no ``torch.multiprocessing``): the launchers import what they need
when they launch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.launchers.launcher import Launcher
    from fabric_core.launchers.multiprocessing import MultiProcessingLauncher
    from fabric_core.launchers.subprocess_script import SubprocessScriptLauncher

__all__ = ["Launcher", "MultiProcessingLauncher", "SubprocessScriptLauncher"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Launcher": "fabric_core.launchers.launcher",
        "MultiProcessingLauncher": "fabric_core.launchers.multiprocessing",
        "SubprocessScriptLauncher": "fabric_core.launchers.subprocess_script",
    },
)
