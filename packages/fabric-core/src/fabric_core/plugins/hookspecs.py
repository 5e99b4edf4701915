"""The hooks a fabric plugin implements. Each receives a registry to add names to.

A plugin is a module named by an entry point in the ``fabric`` group::

    # pyproject.toml of your distribution
    [project.entry-points.fabric]
    my_plugin = "my_package.fabric_plugin"

    # my_package/fabric_plugin.py  (keep it import-cheap: name targets as "module:attr" strings)
    from fabric_core.plugins import hookimpl

    @hookimpl
    def fabric_register_strategies(registry):
        registry.register("my_strategy", "my_package.strategy:MyStrategy", description="...")
"""

from __future__ import annotations

import pluggy

from fabric_core.plugins._hooks import HOOKS, PROJECT
from fabric_core.plugins.registry import Registry

__all__ = ["HOOKS", "hookspec"]

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def fabric_register_accelerators(registry: Registry) -> None:
    """Register accelerators: ``registry.register("mydevice", "pkg.accel:MyAccelerator")``."""


@hookspec
def fabric_register_strategies(registry: Registry) -> None:
    """Register strategies: ``registry.register("my_ddp", "pkg.strategy:MyDDP", bucket_mb=50)``."""


@hookspec
def fabric_register_precisions(registry: Registry) -> None:
    """Register precisions: ``registry.register("fp8-mixed", "pkg.fp8:FP8Precision")``."""


@hookspec
def fabric_register_cluster_environments(registry: Registry) -> None:
    """Register cluster environments: ``registry.register("my_scheduler", "pkg.env:MySchedulerEnvironment")``."""


@hookspec
def fabric_register_loggers(registry: Registry) -> None:
    """Register loggers: ``registry.register("csv", "pkg.csv:CSVLogger", root_dir="logs")``."""


@hookspec
def fabric_register_cli_commands(registry: Registry) -> None:
    """Register ``fabric`` subcommands: ``registry.register("consolidate", "pkg.cli:main", description=...)``.

    The target is a callable taking the command's arguments (a list of strings) and returning an exit
    code or ``None``.
    """
