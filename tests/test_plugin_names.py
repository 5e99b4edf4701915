"""Who gets a name: core names stay core's unless overridden, duplicates are errors, unknown names explain.

The rule: a single ``override=True`` registration wins; otherwise fabric-core's own registration wins
(a plain registration of a core name by a plugin is reported as shadowed); otherwise a single
registration; otherwise the name is a conflict, unusable until one side goes.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from fabric_core import Fabric
from fabric_core.cli import plugins as plugins_cli
from fabric_core.environments.local import LocalEnvironment
from fabric_core.plugins import manager
from fabric_core.plugins.manager import PluginLoadWarning, get_registries
from fabric_core.plugins.registry import Registry, ScopedRegistry


def command_plugin(name: str) -> str:
    """The source of a plugin registering the command ``name`` (which says hello)."""
    return textwrap.dedent(
        f"""
        from fabric_core.plugins import hookimpl

        @hookimpl
        def fabric_register_cli_commands(registry):
            registry.register({name!r}, "fake_targets:hello", description="a plugin's command")
        """
    )


LOCAL_ENVIRONMENT_PLUGIN = textwrap.dedent(
    """
    from fabric_core.plugins import hookimpl

    @hookimpl
    def fabric_register_cluster_environments(registry):
        registry.register("local", "fake_targets:FakeEnvironment")
    """
)


# -- core names ----------------------------------------------------------------------------------------------


def test_plain_registration_of_a_core_name_leaves_the_core_name_working(site) -> None:
    site.add_plugin("fake-ddp", site.strategy_plugin("ddp"))
    with pytest.warns(PluginLoadWarning):
        entry = get_registries().strategies.get("ddp")
    assert entry.distribution == "fabric-core"


def test_plain_registration_of_the_local_environment_leaves_fabric_working(site) -> None:
    site.add_plugin("fake-local", LOCAL_ENVIRONMENT_PLUGIN)
    with pytest.warns(PluginLoadWarning):
        fabric = Fabric(accelerator="cpu", devices=2)
    assert type(fabric.strategy.cluster_environment) is LocalEnvironment


def test_plain_registration_of_a_core_name_warns_naming_both_and_the_fix(site) -> None:
    site.add_plugin("fake-ddp", site.strategy_plugin("ddp"), version="2.1")
    with pytest.warns(PluginLoadWarning) as record:
        get_registries()
    (message,) = [str(w.message) for w in record if issubclass(w.category, PluginLoadWarning)]
    assert "plugin 'fake_ddp' from fake-ddp 2.1 registers strategy 'ddp'" in message
    assert "fabric-core's 'ddp' is kept" in message and "override=True" in message


def test_plugins_json_lists_a_shadowed_core_name_as_resolving_to_core_and_exits_1(
    site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.add_plugin("fake-ddp", site.strategy_plugin("ddp"), version="2.1")
    with pytest.warns(PluginLoadWarning):
        assert plugins_cli.main(["--json"]) == 1
    (conflict,) = json.loads(capsys.readouterr().out)["conflicts"]
    assert (conflict["kind"], conflict["name"]) == ("strategies", "ddp")
    assert [s["distribution"] for s in conflict["registered_by"]] == ["fabric-core", "fake-ddp"]
    assert conflict["resolves_to"]["distribution"] == "fabric-core"


def test_plugins_text_shows_the_plugins_name_as_shadowed(site, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-ddp", site.strategy_plugin("ddp", "own_name"))
    with pytest.warns(PluginLoadWarning):
        plugins_cli.main([])
    out = capsys.readouterr().out
    assert "ddp (shadowed by fabric-core), own_name" in out
    assert "fabric-core's is used (a plugin replaces it only with override=True)" in out


# -- one plugin, one registration per name -------------------------------------------------------------------


def test_name_registered_twice_by_one_plugin_raises_at_register() -> None:
    scoped = ScopedRegistry(Registry("strategies"), "fake-twice", "1.0", "fake_twice")
    scoped.register("twice", "fake_targets:FakeStrategy")
    with pytest.raises(ValueError, match=r"strategy 'twice' of plugin 'fake_twice' \(fake-twice 1\.0\).*twice"):
        scoped.register("twice", "fake_targets:OtherStrategy")


def test_name_registered_twice_by_one_plugin_is_that_plugins_failure(site, lenient: None) -> None:
    site.add_plugin("fake-twice", site.strategy_plugin("twice", "twice"))
    with pytest.warns(PluginLoadWarning, match=r"fake-twice 1\.0.*'twice'.*registered twice"):
        registries = get_registries()
    assert "twice" not in registries.strategies
    assert registries.strategies.conflicts == {}


# -- commands named like the built-in ones -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["run", "plugins"])
def test_plugin_command_named_like_a_builtin_is_listed_in_conflicts(
    site, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    site.add_plugin("fake-clash", command_plugin(name))
    with pytest.warns(PluginLoadWarning):
        assert plugins_cli.main(["--json"]) == 1
    (conflict,) = json.loads(capsys.readouterr().out)["conflicts"]
    assert (conflict["kind"], conflict["name"]) == ("commands", name)
    assert [s["distribution"] for s in conflict["registered_by"]] == ["fabric-core", "fake-clash"]


def test_builtin_plugins_command_keeps_working_beside_a_plugin_command_of_that_name(site) -> None:
    site.add_plugin("fake-clash", command_plugin("plugins"))
    result = site.run_fabric("plugins", "--json")
    assert "hello from a plugin" not in result.stdout
    assert json.loads(result.stdout)["conflicts"][0]["name"] == "plugins"


# -- unknown names mention the plugins that were not loaded ---------------------------------------------------


def test_unknown_name_mentions_a_third_party_plugin_that_failed_to_load(site, lenient: None) -> None:
    site.add_plugin("fake-fastnet", site.BROKEN_IMPORT, version="1.0")
    registries = site.discover_leniently()
    with pytest.raises(ValueError) as info:
        registries.strategies.get("fastnet")
    message = str(info.value)
    assert message.startswith("Unknown strategy 'fastnet'. Available: ")
    assert "fake-fastnet" in message and "was not loaded" in message
    assert "ModuleNotFoundError" in message and "missing_dependency_of_the_plugin" in message


def test_unknown_name_mentions_a_disabled_third_party_plugin(site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.add_plugin("fake-fastnet", site.strategy_plugin("fastnet"))
    monkeypatch.setenv(manager.DISABLE_ENV, "fake-fastnet")
    with pytest.raises(ValueError) as info:
        get_registries().strategies.get("fastnet")
    message = str(info.value)
    assert "fake-fastnet" in message and f"is disabled by {manager.DISABLE_ENV}=fake-fastnet" in message
