"""One plugin's broken target never breaks the others: kind checks, automatic choices and ``fabric plugins --check``.

Automatic choices (``accelerator="auto"``/``"gpu"``, cluster-environment detection) try every
registered class; a class that fails to import, is not of its kind, or whose ``is_available()`` /
``detect()`` raises is skipped with a ``PluginLoadWarning`` (strict mode: ``PluginError``). Asked for
by name, the same target is an error naming its plugin.
"""

from __future__ import annotations

import json
import sys
import textwrap
import warnings

import pytest

from fabric_core import Fabric
from fabric_core.accelerators import CPUAccelerator
from fabric_core.cli import plugins as plugins_cli
from fabric_core.environments.local import LocalEnvironment
from fabric_core.plugins.manager import PluginError, PluginLoadWarning, get_registries
from fabric_core.plugins.registry import Registry, ScopedRegistry
from fabric_core.strategies import SingleDeviceStrategy

#: A module of classes whose static questions raise, for plugins to point at.
RAISING_TARGETS = """
from fabric_core.accelerators.cpu import CPUAccelerator
from fabric_core.environments.local import LocalEnvironment

class RaisingAccelerator(CPUAccelerator):
    priority = 99

    @staticmethod
    def is_available():
        raise RuntimeError("the driver crashed")

class RaisingEnvironment(LocalEnvironment):
    @staticmethod
    def detect():
        raise RuntimeError("the scheduler is unreachable")
"""


def plugin(hook: str, name: str, target: str) -> str:
    """The source of a plugin whose ``hook`` registers ``name`` for ``target`` (a lazy string)."""
    return textwrap.dedent(
        f"""
        from fabric_core.plugins import hookimpl

        @hookimpl
        def {hook}(registry):
            registry.register({name!r}, {target!r})
        """
    )


def environment_plugin(target: str) -> str:
    return plugin("fabric_register_cluster_environments", "broken_env", target)


def accelerator_plugin(target: str) -> str:
    return plugin("fabric_register_accelerators", "broken_accel", target)


def skip_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PluginLoadWarning)]


# -- automatic choices skip a broken target ----------------------------------------------------------------


def test_environment_failing_to_import_does_not_break_a_cpu_fabric(site, lenient: None) -> None:
    site.add_plugin("fake-broken-env", environment_plugin("missing_module_of_the_plugin:Environment"))
    with pytest.warns(PluginLoadWarning):
        fabric = Fabric(accelerator="cpu", devices=1)
    assert fabric.world_size == 1


def test_skipped_environment_warning_names_the_name_plugin_distribution_and_error(site, lenient: None) -> None:
    site.add_plugin("fake-broken-env", environment_plugin("missing_module_of_the_plugin:Environment"), version="0.4")
    with pytest.warns(PluginLoadWarning) as record:
        Fabric(accelerator="cpu", devices=1)
    (message,) = skip_warnings(record)
    assert "cluster environment 'broken_env' of plugin 'fake_broken_env' (fake-broken-env 0.4)" in message
    assert "ModuleNotFoundError" in message and "missing_module_of_the_plugin" in message


def test_environment_whose_detect_raises_is_skipped(site, lenient: None) -> None:
    site.add_module("raising_targets", RAISING_TARGETS)
    site.add_plugin("fake-raising-env", environment_plugin("raising_targets:RaisingEnvironment"))
    with pytest.warns(PluginLoadWarning, match=r"RaisingEnvironment\.detect\(\) raised .*scheduler is unreachable"):
        fabric = Fabric(accelerator="cpu", devices=2)
    assert type(fabric.strategy.cluster_environment) is LocalEnvironment


def test_environment_of_the_wrong_kind_is_skipped(site, lenient: None) -> None:
    site.add_plugin("fake-wrong-env", environment_plugin("fake_targets:FakeStrategy"))
    with pytest.warns(PluginLoadWarning, match=r"'broken_env'.*not a subclass of .*ClusterEnvironment"):
        fabric = Fabric(accelerator="cpu", devices=2)
    assert type(fabric.strategy.cluster_environment) is LocalEnvironment


def test_accelerator_failing_to_import_is_skipped_by_auto(site, lenient: None) -> None:
    site.add_plugin("fake-broken-accel", accelerator_plugin("missing_module_of_the_plugin:Accelerator"))
    with pytest.warns(PluginLoadWarning, match=r"accelerator 'broken_accel' of plugin 'fake_broken_accel'"):
        fabric = Fabric()
    assert isinstance(fabric.accelerator, CPUAccelerator)


def test_accelerator_whose_is_available_raises_is_skipped_by_auto(site, lenient: None) -> None:
    site.add_module("raising_targets", RAISING_TARGETS)
    site.add_plugin("fake-raising-accel", accelerator_plugin("raising_targets:RaisingAccelerator"))
    with pytest.warns(PluginLoadWarning, match=r"is_available\(\) raised RuntimeError: the driver crashed"):
        fabric = Fabric()
    assert type(fabric.accelerator) is CPUAccelerator


def test_a_skipped_target_warns_once_per_process(site, lenient: None) -> None:
    site.add_plugin("fake-broken-env", environment_plugin("missing_module_of_the_plugin:Environment"))
    with pytest.warns(PluginLoadWarning) as record:
        Fabric(accelerator="cpu", devices=1)
        Fabric(accelerator="cpu", devices=1)
    assert len(skip_warnings(record)) == 1


def test_strict_mode_raises_for_a_broken_target_in_an_automatic_choice(site) -> None:
    site.add_plugin("fake-broken-env", environment_plugin("missing_module_of_the_plugin:Environment"))
    with pytest.raises(PluginError, match=r"'broken_env' of plugin 'fake_broken_env'.*FABRIC_STRICT_PLUGINS=1"):
        Fabric(accelerator="cpu", devices=1)


# -- asked for by name, a broken target is an error naming its plugin ----------------------------------


def test_broken_accelerator_asked_for_by_name_raises_naming_the_plugin(site) -> None:
    site.add_plugin("fake-broken-accel", accelerator_plugin("missing_module_of_the_plugin:Accelerator"))
    with pytest.raises(ImportError, match=r"accelerator 'broken_accel' of plugin 'fake_broken_accel' \(fake-broken"):
        Fabric(accelerator="broken_accel")


def test_accelerator_whose_is_available_raises_asked_for_by_name_raises_naming_the_plugin(site) -> None:
    site.add_module("raising_targets", RAISING_TARGETS)
    site.add_plugin("fake-raising-accel", accelerator_plugin("raising_targets:RaisingAccelerator"))
    with pytest.raises(RuntimeError, match=r"of plugin 'fake_raising_accel'.*the driver crashed"):
        Fabric(accelerator="broken_accel")


def test_broken_strategy_asked_for_by_name_raises_naming_the_plugin(site) -> None:
    site.add_plugin("fake-broken", site.strategy_plugin("broken", target="missing_module_of_the_plugin:Strategy"))
    with pytest.raises(ImportError, match=r"strategy 'broken' of plugin 'fake_broken' \(fake-broken 1\.0\)"):
        Fabric(accelerator="cpu", strategy="broken")


# -- targets are checked against their kind ------------------------------------------------------------------


def test_strategy_registered_as_a_precision_is_a_clear_error_before_setup(site) -> None:
    strategy = "fabric_core.strategies.single_device:SingleDeviceStrategy"
    site.add_plugin("fake-mixup", plugin("fabric_register_precisions", "mixed-up", strategy))
    with pytest.raises(TypeError) as info:
        Fabric(accelerator="cpu", precision="mixed-up")
    message = str(info.value)
    assert "precision 'mixed-up' of plugin 'fake_mixup' (fake-mixup 1.0)" in message
    assert "not a subclass of fabric_core.precision.precision.Precision" in message
    assert "register it in fabric_register_strategies" in message


def test_logger_name_of_the_wrong_kind_is_a_clear_error(site) -> None:
    site.add_plugin("fake-mixup", plugin("fabric_register_loggers", "not_a_logger", "fake_targets:FakePrecision"))
    with pytest.raises(TypeError, match=r"logger 'not_a_logger' of plugin 'fake_mixup'.*Logger"):
        Fabric(accelerator="cpu", loggers="not_a_logger")


def test_class_of_the_wrong_kind_is_that_plugins_failure_at_discovery(site, lenient: None) -> None:
    source = textwrap.dedent(
        """
        from fabric_core.plugins import hookimpl
        from fabric_core.strategies.single_device import SingleDeviceStrategy

        @hookimpl
        def fabric_register_precisions(registry):
            registry.register("mixed-up", SingleDeviceStrategy)
        """
    )
    site.add_plugin("fake-mixup", source)
    with pytest.warns(PluginLoadWarning, match=r"fake-mixup 1\.0.*precision 'mixed-up'.*not a subclass"):
        registries = get_registries()
    assert "mixed-up" not in registries.precisions


def test_class_of_the_wrong_kind_is_refused_at_register() -> None:
    scoped = ScopedRegistry(Registry("precisions"), "fake-mixup", "1.0", "fake_mixup")
    with pytest.raises(TypeError, match=r"precision 'mixed-up' of plugin 'fake_mixup' \(fake-mixup 1\.0\)"):
        scoped.register("mixed-up", SingleDeviceStrategy)


def test_factory_function_is_refused_for_a_strategy() -> None:
    # Resolution reads class attributes before it constructs; variants are keyword arguments of register().
    with pytest.raises(TypeError, match="a class, not a factory function"):
        Registry("strategies").register("made", lambda: SingleDeviceStrategy())


def test_command_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"command 'hello'.*not callable"):
        Registry("commands").register("hello", 42)


# -- fabric plugins --check ----------------------------------------------------------------------------------


def test_plugins_check_exits_0_when_every_target_is_good(site, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND)
    assert plugins_cli.main(["--check"]) == 0
    assert "check: " in capsys.readouterr().out


def test_plugins_check_reports_each_broken_target_and_exits_1(site, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-broken", site.strategy_plugin("broken", target="missing_module_of_the_plugin:Strategy"))
    site.add_plugin("fake-mixup", plugin("fabric_register_precisions", "mixed-up", "fake_targets:FakeStrategy"))
    assert plugins_cli.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "strategy 'broken' of plugin 'fake_broken' (fake-broken 1.0)" in out
    assert "missing_module_of_the_plugin" in out
    assert "TypeError: precision 'mixed-up' of plugin 'fake_mixup'" in out


def test_plugins_check_json_lists_failures_with_kind_name_and_plugin(site, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-broken", site.strategy_plugin("broken", target="missing_module_of_the_plugin:Strategy"))
    assert plugins_cli.main(["--check", "--json"]) == 1
    (failure,) = json.loads(capsys.readouterr().out)["check"]["failures"]
    assert (failure["kind"], failure["name"], failure["plugin"], failure["distribution"]) == (
        "strategies",
        "broken",
        "fake_broken",
        "fake-broken",
    )
    assert failure["error"].startswith("ImportError: ")


def test_plain_plugins_listing_imports_no_target(site, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND)
    plugins_cli.main([])
    assert "fake_targets" not in sys.modules
