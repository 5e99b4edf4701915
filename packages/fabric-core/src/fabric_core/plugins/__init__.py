"""The plugin system: ``hookimpl`` for plugin authors, the registries for everyone else.

A plugin module, named by an entry point in the ``fabric`` group, implements hooks::

    from fabric_core.plugins import hookimpl

    @hookimpl
    def fabric_register_accelerators(registry):
        registry.register("mydevice", "my_package.accelerator:MyAccelerator")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fabric_core.plugins._hooks import HookimplMarker, hookimpl
    from fabric_core.plugins.manager import PluginError, PluginInfo, PluginLoadWarning, Registries
    from fabric_core.plugins.registry import Entry, Registry

__all__ = [
    "Entry",
    "HookimplMarker",
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
    # hookimpl is needed by every plugin module (and imports no pluggy); the rest only when Fabric resolves names.
    if name in ("hookimpl", "HookimplMarker"):
        from fabric_core.plugins import _hooks

        return getattr(_hooks, name)
    if name in ("Entry", "Registry"):
        from fabric_core.plugins import registry

        return getattr(registry, name)
    if name in ("PluginError", "PluginInfo", "PluginLoadWarning", "Registries", "get_registries", "reset"):
        from fabric_core.plugins import manager

        return getattr(manager, name)
    raise AttributeError(f"module 'fabric_core.plugins' has no attribute {name!r}")
