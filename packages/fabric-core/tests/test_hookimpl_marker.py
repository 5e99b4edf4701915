"""``fabric_core.plugins.hookimpl`` is pluggy's own marker, and the hook specifications are pluggy's."""

from __future__ import annotations

import types

import pluggy

from fabric_core.plugins import hookimpl, hookspecs
from fabric_core.plugins._hooks import HOOKS


def _plugin_module(marker: pluggy.HookimplMarker) -> types.ModuleType:
    module = types.ModuleType("a_plugin")

    def fabric_register_strategies(registry):
        registry.append("strategies")

    def fabric_register_loggers(registry):
        registry.append("loggers")

    module.fabric_register_strategies = marker(fabric_register_strategies)  # type: ignore[attr-defined]
    module.fabric_register_loggers = marker(tryfirst=True)(fabric_register_loggers)  # type: ignore[attr-defined]
    return module


def _manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("fabric")
    manager.add_hookspecs(hookspecs)
    return manager


def test_hookimpl_is_pluggys_marker_for_the_fabric_project() -> None:
    assert isinstance(hookimpl, pluggy.HookimplMarker)
    assert hookimpl.project_name == "fabric"


def test_hookspecs_declare_every_hook_with_one_registry_argument() -> None:
    manager = _manager()
    for name in HOOKS:
        assert getattr(manager.hook, name).spec.argnames == ("registry",)


def test_pluggy_plugin_manager_calls_functions_marked_with_hookimpl() -> None:
    manager = _manager()
    manager.register(_plugin_module(hookimpl))
    calls: list[str] = []
    manager.hook.fabric_register_strategies(registry=calls)
    manager.hook.fabric_register_loggers(registry=calls)
    assert calls == ["strategies", "loggers"]


def test_marker_for_another_project_is_ignored_by_fabric() -> None:
    manager = _manager()
    manager.register(_plugin_module(pluggy.HookimplMarker("other")))
    assert manager.hook.fabric_register_strategies.get_hookimpls() == []


def test_discovery_finds_the_same_hooks_in_a_module_as_pluggy() -> None:
    # Discovery's PluginManager passes over a module's unmarked attributes quickly; the result must not change.
    from fabric_core.plugins.manager import _PluginManager

    module = _plugin_module(hookimpl)
    module.helper = lambda registry: None  # type: ignore[attr-defined]
    module.CONSTANT = 3  # type: ignore[attr-defined]
    module.renamed = hookimpl(specname="fabric_register_precisions")(lambda registry: None)  # type: ignore[attr-defined]
    found = []
    for manager in (pluggy.PluginManager("fabric"), _PluginManager("fabric")):
        manager.add_hookspecs(hookspecs)
        manager.register(module)
        found.append(sorted((caller.name, len(caller.get_hookimpls())) for caller in manager.get_hookcallers(module)))
    assert (
        found[0]
        == found[1]
        == [
            ("fabric_register_loggers", 1),
            ("fabric_register_precisions", 1),
            ("fabric_register_strategies", 1),
        ]
    )
