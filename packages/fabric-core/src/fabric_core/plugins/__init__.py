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
    # hookimpl is needed by every plugin module; the rest only when Fabric resolves names.
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("fabric")
        globals()["hookimpl"] = marker
        return marker
    if name in ("Entry", "Registry"):
        from fabric_core.plugins import registry

        return getattr(registry, name)
    if name in ("PluginError", "PluginInfo", "PluginLoadWarning", "Registries", "get_registries", "reset"):
        from fabric_core.plugins import manager

        return getattr(manager, name)
    raise AttributeError(f"module 'fabric_core.plugins' has no attribute {name!r}")
