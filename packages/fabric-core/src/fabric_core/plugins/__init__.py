"""The plugin system: ``hookimpl`` for plugin authors, the registries for everyone else.

A plugin module, named by an entry point in the ``fabric`` group, implements hooks; ``hookimpl`` is
pluggy's ``HookimplMarker("fabric")``::

    from fabric_core.plugins import hookimpl

    @hookimpl
    def fabric_register_accelerators(registry):
        registry.register("mydevice", "my_package.accelerator:MyAccelerator")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fabric_core.plugins.hookspecs import hookimpl
    from fabric_core.plugins.manager import PluginError, PluginInfo, PluginLoadWarning, Registries
    from fabric_core.plugins.registry import Entry, Registry

__all__ = [
    "Entry",
    "PluginError",
    "PluginInfo",
    "PluginLoadWarning",
    "Registries",
    "Registry",
    "get_registries",
    "hookimpl",
    "reset",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: nothing here runs at `import fabric_core`, only when plugins are discovered.
    if name == "hookimpl":
        from fabric_core.plugins.hookspecs import hookimpl

        return hookimpl
    if name in ("Entry", "Registry"):
        from fabric_core.plugins import registry

        return getattr(registry, name)
    if name in ("PluginError", "PluginInfo", "PluginLoadWarning", "Registries", "get_registries", "reset"):
        from fabric_core.plugins import manager

        return getattr(manager, name)
    raise AttributeError(f"module 'fabric_core.plugins' has no attribute {name!r}")
