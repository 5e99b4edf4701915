"""fabric's ``hookimpl`` marks functions so that pluggy's PluginManager registers them too."""

from __future__ import annotations

import types

import pluggy
import pytest

from fabric_core.plugins import HookimplMarker, hookimpl, hookspecs


def _plugin_module(marker: object) -> types.ModuleType:
    module = types.ModuleType("a_plugin")

    def fabric_register_strategies(registry):
        registry.append("first")

    def fabric_register_loggers(registry):
        registry.append("logger")

    module.fabric_register_strategies = marker(fabric_register_strategies)  # type: ignore[operator]
    module.fabric_register_loggers = marker(tryfirst=True)(fabric_register_loggers)  # type: ignore[operator]
    return module


def test_hookimpl_sets_the_same_attribute_as_pluggys_marker() -> None:
    def ours(registry):
        pass

    def theirs(registry):
        pass

    hookimpl(tryfirst=True, specname="fabric_register_loggers")(ours)
    pluggy.HookimplMarker("fabric")(tryfirst=True, specname="fabric_register_loggers")(theirs)
    assert ours.fabric_impl == theirs.fabric_impl  # type: ignore[attr-defined]


def test_pluggy_plugin_manager_calls_functions_marked_with_hookimpl() -> None:
    manager = pluggy.PluginManager("fabric")
    manager.add_hookspecs(hookspecs)
    manager.register(_plugin_module(hookimpl))
    calls: list[str] = []
    manager.hook.fabric_register_strategies(registry=calls)
    manager.hook.fabric_register_loggers(registry=calls)
    assert calls == ["first", "logger"]


def test_marker_for_another_project_is_ignored_by_fabric() -> None:
    manager = pluggy.PluginManager("fabric")
    manager.add_hookspecs(hookspecs)
    manager.register(_plugin_module(HookimplMarker("other")))
    assert manager.hook.fabric_register_strategies.get_hookimpls() == []


def test_hookimpl_rejects_what_is_not_a_function() -> None:
    with pytest.raises(TypeError, match="marks functions"):
        hookimpl("fabric_register_strategies")


@pytest.mark.parametrize("name", ["", None, 3])
def test_marker_needs_a_project_name(name: object) -> None:
    with pytest.raises(TypeError, match="project name"):
        HookimplMarker(name)  # type: ignore[arg-type]
