"""Launchers: how the processes of a multi-process run are started.

Importing this package is cheap (no ``torch.multiprocessing``): the launchers import what they need
when they launch.
"""

from fabric_core.launchers.launcher import Launcher
from fabric_core.launchers.multiprocessing import MultiProcessingLauncher
from fabric_core.launchers.subprocess_script import SubprocessScriptLauncher

__all__ = ["Launcher", "MultiProcessingLauncher", "SubprocessScriptLauncher"]
