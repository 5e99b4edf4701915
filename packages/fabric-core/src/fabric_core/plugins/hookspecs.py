"""The hooks a fabric plugin implements, as pluggy hook specifications, and the ``hookimpl`` marker.

A plugin is a module (or any object) named by an entry point in the ``fabric`` group::

    # pyproject.toml of your distribution
    [project]
    dependencies = ["fabric-core>=0.1,<0.2"]

    [project.entry-points.fabric]
    my_plugin = "my_package.fabric_plugin"

    # my_package/fabric_plugin.py  (keep it import-cheap: name targets as "module:attr" strings)
    from fabric_core.plugins import hookimpl

    @hookimpl
    def fabric_register_strategies(registry):
        registry.register("my_strategy", "my_package.strategy:MyStrategy", description="...")

``hookimpl`` is pluggy's ``HookimplMarker("fabric")``: ``tryfirst``, ``trylast``, ``optionalhook`` and
``specname`` mean what pluggy documents. Each hook is called once per plugin with one argument,
``registry``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from fabric_core.plugins._hooks import PROJECT

if TYPE_CHECKING:
    from fabric_core.plugins.registry import Registry

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


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
    """Register ``fabric`` subcommands: ``registry.register("export", "pkg.cli:main", description=...)``.

    The target is a callable taking the command's arguments (a list of strings) and returning an exit
    code or ``None``.
    """


@hookspec
def fabric_register_checkpoint_consolidators(registry: Registry) -> None:
    """Register checkpoint formats for ``fabric consolidate``: ``registry.register("myshards", "pkg.shards:MyShards")``.

    The target is a :class:`fabric_core.io.CheckpointConsolidator` subclass; the name is what
    ``fabric consolidate DIR --format NAME`` takes. Without ``--format``, the command uses the one
    format whose ``recognizes(DIR)`` holds::

        @hookimpl
        def fabric_register_checkpoint_consolidators(registry):
            registry.register("myshards", "my_package.shards:MyShardsConsolidator", description="my shard folders")
    """
