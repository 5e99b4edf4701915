"""Plugin discovery through real entry points: fake distributions installed on disk for each test.

Each test writes ``<name>-<version>.dist-info`` folders (METADATA and an ``entry_points.txt`` declaring
the ``fabric`` group) and the plugin modules into ``tmp_path``, puts it on ``sys.path`` and discovers.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import pytest

from fabric_core.cli import plugins as plugins_cli
from fabric_core.plugins import manager
from fabric_core.plugins.manager import PluginError, PluginLoadWarning, get_registries

# -- third-party names resolve -----------------------------------------------------------------------

KINDS = [
    ("accelerators", "fake_accel", "FakeAccelerator"),
    ("strategies", "fake_strategy", "FakeStrategy"),
    ("precisions", "fake-precision", "FakePrecision"),
    ("cluster_environments", "fake_env", "FakeEnvironment"),
    ("loggers", "fake_logger", "FakeLogger"),
    ("commands", "hello", "hello"),
    ("consolidators", "fake_format", "FakeConsolidator"),
]


@pytest.mark.parametrize(("kind", "name", "attribute"), KINDS)
def test_third_party_name_resolves_to_its_target(site, kind: str, name: str, attribute: str) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND, version="1.2.3")
    target = get_registries()[kind].load(name)
    assert target is getattr(importlib.import_module("fake_targets"), attribute)


@pytest.mark.parametrize(("kind", "name", "attribute"), KINDS)
def test_third_party_entry_names_its_distribution_and_version(site, kind: str, name: str, attribute: str) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND, version="1.2.3")
    entry = get_registries()[kind].get(name)
    assert (entry.distribution, entry.version, entry.plugin) == (
        "fake-everything",
        "1.2.3",
        "fake_everything",
    )


def test_third_party_plugin_is_reported_with_its_names(site) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND, version="1.2.3")
    info = site.info_of(get_registries(), "fake-everything")
    assert info.registered["strategies"] == ["fake_strategy"]
    assert info.registered["commands"] == ["hello"]
    assert (info.errors, info.disabled) == ([], False)


def test_builtins_stay_available_beside_third_party_plugins(site) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND)
    assert {"cpu", "fake_accel"} <= set(get_registries().accelerators.names())


def test_lazy_target_is_imported_only_when_loaded(site) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND)
    entry = get_registries().strategies.get("fake_strategy")
    assert "fake_targets" not in sys.modules
    entry.load()
    assert "fake_targets" in sys.modules


# -- discovery is lazy and cached ------------------------------------------------------------------


def test_import_fabric_core_loads_no_plugin_machinery() -> None:
    code = "import fabric_core, sys; print('pluggy' in sys.modules, 'fabric_core.plugins.manager' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_discovery_runs_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_discover = manager.discover
    monkeypatch.setattr(manager, "discover", lambda: calls.append(1) or real_discover())
    first, second = get_registries(), get_registries()
    assert first is second
    assert len(calls) == 1


def test_reset_makes_the_next_use_discover_again(site) -> None:
    assert "late_strategy" not in get_registries().strategies
    site.add_plugin("fake-late", site.strategy_plugin("late_strategy"))
    manager.reset()
    assert "late_strategy" in get_registries().strategies


# -- broken plugins ----------------------------------------------------------------------------------


def test_plugin_failing_to_import_warns_with_distribution_version_and_error(site, lenient: None) -> None:
    site.add_plugin("fake-broken", site.BROKEN_IMPORT, version="0.9.1")
    with pytest.warns(PluginLoadWarning) as warned:
        get_registries()
    (message,) = [str(w.message) for w in warned if issubclass(w.category, PluginLoadWarning)]
    assert "fake-broken 0.9.1" in message
    assert "ModuleNotFoundError" in message and "missing_dependency_of_the_plugin" in message


def test_plugin_failing_to_import_registers_nothing(site, lenient: None) -> None:
    site.add_plugin("fake-broken", site.BROKEN_IMPORT)
    registries = site.discover_leniently()
    assert "fake_strategy" not in registries.strategies
    assert "fake_accel" not in registries.accelerators


def test_plugin_failing_to_import_leaves_other_plugins_working(site, lenient: None) -> None:
    site.add_plugin("fake-broken", site.BROKEN_IMPORT)
    site.add_plugin("fake-good", site.strategy_plugin("good_strategy"))
    registries = site.discover_leniently()
    assert registries.strategies.load("good_strategy").__name__ == "FakeStrategy"
    assert registries.accelerators.get("cpu").distribution == "fabric-core"


def test_plugin_failing_to_import_is_reported_as_failed(site, lenient: None) -> None:
    site.add_plugin("fake-broken", site.BROKEN_IMPORT)
    (error,) = site.info_of(site.discover_leniently(), "fake-broken").errors
    assert "missing_dependency_of_the_plugin" in error


def test_raising_hook_warns_with_distribution_version_and_error(site, lenient: None) -> None:
    site.add_plugin("fake-raising", site.RAISING_HOOK, version="2.0")
    with pytest.warns(PluginLoadWarning, match=r"fake-raising 2\.0.*RuntimeError: the hook broke halfway"):
        get_registries()


def test_raising_hook_adds_none_of_its_registrations(site, lenient: None) -> None:
    site.add_plugin("fake-raising", site.RAISING_HOOK)
    assert "half_done" not in site.discover_leniently().strategies


def test_raising_hook_leaves_other_plugins_working(site, lenient: None) -> None:
    site.add_plugin("fake-raising", site.RAISING_HOOK)
    site.add_plugin("fake-good", site.strategy_plugin("good_strategy"))
    assert "good_strategy" in site.discover_leniently().strategies


def test_plugin_whose_later_hook_raises_keeps_none_of_its_names(site, lenient: None) -> None:
    # A skipped plugin is skipped whole: its accelerator may need the strategy that failed to register.
    source = site.RAISING_HOOK + textwrap.dedent(
        """
        @hookimpl
        def fabric_register_accelerators(registry):
            registry.register("accel_of_a_broken_plugin", "fake_targets:FakeAccelerator")
        """
    )
    site.add_plugin("fake-raising", source)
    registries = site.discover_leniently()
    assert "accel_of_a_broken_plugin" not in registries.accelerators
    assert site.info_of(registries, "fake-raising").registered == {}


def test_hookimpl_with_a_wrong_argument_name_is_that_plugins_failure(site, lenient: None) -> None:
    source = textwrap.dedent(
        """
        from fabric_core.plugins import hookimpl

        @hookimpl
        def fabric_register_strategies(reg):
            reg.register("never", "fake_targets:FakeStrategy")
        """
    )
    site.add_plugin("fake-misnamed", source, version="0.1")
    site.add_plugin("fake-good", site.strategy_plugin("good_strategy"))
    with pytest.warns(PluginLoadWarning, match=r"fake-misnamed 0\.1.*reg"):
        registries = get_registries()
    assert site.info_of(registries, "fake-misnamed").errors
    assert "good_strategy" in registries.strategies


def test_plugin_marked_with_pluggys_own_marker_is_found(site) -> None:
    source = textwrap.dedent(
        """
        import pluggy

        hookimpl = pluggy.HookimplMarker("fabric")

        @hookimpl
        def fabric_register_strategies(registry):
            registry.register("pluggy_marked", "fake_targets:FakeStrategy")
        """
    )
    site.add_plugin("fake-pluggy-marked", source)
    assert "pluggy_marked" in get_registries().strategies


def test_specname_names_the_hook_a_function_implements(site) -> None:
    source = textwrap.dedent(
        """
        from fabric_core.plugins import hookimpl

        @hookimpl(specname="fabric_register_strategies")
        def add_my_strategies(registry):
            registry.register("by_specname", "fake_targets:FakeStrategy")
        """
    )
    site.add_plugin("fake-specname", source)
    assert "by_specname" in get_registries().strategies


@pytest.mark.parametrize(
    ("decorator", "message"),
    [
        ("@hookimpl(wrapper=True)\ndef fabric_register_strategies(registry):\n    yield", "hook wrapper"),
        ("@hookimpl\ndef fabric_register_strategy(registry):", "no fabric hook of that name"),
        ("@hookimpl(specname='fabric_register_nothing')\ndef f(registry):", "fabric_register_nothing"),
    ],
)
def test_misused_hookimpl_is_that_plugins_failure(site, lenient: None, decorator: str, message: str) -> None:
    source = f"from fabric_core.plugins import hookimpl\n\n{decorator}\n    registry.register('never', 'm:X')\n"
    site.add_plugin("fake-misused", source, version="0.3")
    site.add_plugin("fake-good", site.strategy_plugin("good_strategy"))
    with pytest.warns(PluginLoadWarning, match=rf"fake-misused 0\.3.*{message}"):
        registries = get_registries()
    assert "never" not in registries.strategies
    assert "good_strategy" in registries.strategies


def test_malformed_target_is_that_plugins_failure(site, lenient: None) -> None:
    # Checked when the hook registers it, so one plugin's typo cannot break discovery for all.
    site.add_plugin("fake-typo", site.strategy_plugin("typo", target="fake_targets.FakeStrategy"), version="0.2")
    site.add_plugin("fake-good", site.strategy_plugin("good_strategy"))
    with pytest.warns(PluginLoadWarning, match=r"fake-typo 0\.2.*package\.module:attribute"):
        registries = get_registries()
    assert "typo" not in registries.strategies
    assert "good_strategy" in registries.strategies


def test_strict_mode_raises_plugin_error_naming_the_distribution(site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(manager.STRICT_ENV, "1")
    site.add_plugin("fake-broken", site.BROKEN_IMPORT, version="0.9.1")
    with pytest.raises(PluginError, match=r"fake-broken 0\.9\.1.*missing_dependency_of_the_plugin"):
        get_registries()


def test_strict_mode_error_does_not_claim_the_plugin_was_skipped(site, monkeypatch: pytest.MonkeyPatch) -> None:
    # Under strict mode nothing was skipped, and the variable the message suggests is already set.
    monkeypatch.setenv(manager.STRICT_ENV, "1")
    site.add_plugin("fake-broken", site.BROKEN_IMPORT)
    with pytest.raises(PluginError) as info:
        get_registries()
    assert "Skipping" not in str(info.value)
    assert f"{manager.STRICT_ENV}=1 to make this an error" not in str(info.value)


# -- pluggy's semantics --------------------------------------------------------------------------------

ENVIRONMENT_PLUGIN = """
from fabric_core.plugins import hookimpl

@hookimpl{options}
def fabric_register_cluster_environments(registry):
    registry.register({name!r}, "fake_targets:FakeEnvironment")
"""


def _environment_plugin(name: str, options: str = "") -> str:
    return ENVIRONMENT_PLUGIN.format(name=name, options=options)


def _environments() -> list[str]:
    """The cluster environments in detection order."""
    return [entry.name for entry in get_registries().cluster_environments]


def test_tryfirst_environment_is_detected_before_the_core_environments(site) -> None:
    site.add_plugin("fake-scheduler", _environment_plugin("my_scheduler", "(tryfirst=True)"))
    assert _environments()[0] == "my_scheduler"


def test_plain_environment_is_detected_after_the_core_environments(site) -> None:
    site.add_plugin("fake-scheduler", _environment_plugin("my_scheduler"))
    assert _environments()[-1] == "my_scheduler"


def test_trylast_environment_is_detected_after_other_plugins_environments(site) -> None:
    # Without trylast, "fake-a" would come first: plugins are called in distribution-name order.
    site.add_plugin("fake-a", _environment_plugin("last_resort", "(trylast=True)"))
    site.add_plugin("fake-b", _environment_plugin("plain"))
    assert _environments()[-2:] == ["plain", "last_resort"]


def test_optionalhook_for_a_hook_fabric_does_not_have_is_accepted(site) -> None:
    # A plugin may implement a hook from a later fabric-core; strict mode is on, so a failure would raise.
    source = site.strategy_plugin("still_here") + textwrap.dedent(
        """
        @hookimpl(optionalhook=True)
        def fabric_register_hook_of_the_future(registry):
            raise AssertionError("never called")
        """
    )
    site.add_plugin("fake-future", source)
    registries = get_registries()
    assert "still_here" in registries.strategies
    assert site.info_of(registries, "fake-future").errors == []


def test_hookimpl_with_an_argument_the_hook_lacks_is_that_plugins_failure(site, lenient: None) -> None:
    source = textwrap.dedent(
        """
        from fabric_core.plugins import hookimpl

        @hookimpl
        def fabric_register_strategies(registry, device):
            registry.register("never", "fake_targets:FakeStrategy")
        """
    )
    site.add_plugin("fake-greedy", source, version="0.4")
    with pytest.warns(PluginLoadWarning, match=r"fake-greedy 0\.4.*'device'"):
        registries = get_registries()
    assert "never" not in registries.strategies


def test_hookimpl_without_arguments_is_called_as_pluggy_calls_it(site) -> None:
    # pluggy passes an implementation only the arguments it declares.
    source = textwrap.dedent(
        """
        from fabric_core.plugins import hookimpl

        CALLS = []

        @hookimpl
        def fabric_register_strategies():
            CALLS.append("called")
        """
    )
    module = site.add_plugin("fake-quiet", source)
    assert site.info_of(get_registries(), "fake-quiet").errors == []
    assert sys.modules[module].CALLS == ["called"]


OBJECT_PLUGIN = """
from fabric_core.plugins import hookimpl

@hookimpl
def fabric_register_strategies(registry):
    registry.register("from_the_module", "fake_targets:FakeStrategy")

class Plugin:
    @hookimpl
    def fabric_register_strategies(self, registry):
        registry.register("from_the_object", "fake_targets:FakeStrategy")

plugin = Plugin()
"""


def test_entry_point_naming_an_object_registers_that_objects_hooks(site) -> None:
    site.add_module("fake_object_plugin", OBJECT_PLUGIN)
    site.add_distribution("fake-object", "1.0", {"object": "fake_object_plugin:plugin"})
    registries = get_registries()
    assert registries.strategies.get("from_the_object").distribution == "fake-object"
    assert "from_the_module" not in registries.strategies


def test_entry_point_naming_a_missing_object_is_that_plugins_failure(site, lenient: None) -> None:
    site.add_module("fake_object_plugin", OBJECT_PLUGIN)
    site.add_distribution("fake-object", "1.0", {"object": "fake_object_plugin:no_such_plugin"})
    with pytest.warns(PluginLoadWarning, match=r"fake-object 1\.0.*no_such_plugin"):
        get_registries()


def test_distribution_twice_on_sys_path_is_one_plugin(site, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same distribution, its name spelled another way, in a second folder that comes first on sys.path.
    module = site.add_plugin("fake-twice", site.strategy_plugin("twice_strategy"), version="1.0")
    (tmp_path / "shadow").mkdir()
    shadow = type(site)(tmp_path / "shadow")
    shadow.add_distribution("Fake.Twice", "2.0", {"fake_twice": module})
    monkeypatch.syspath_prepend(str(shadow.root))
    registries = get_registries()
    (info,) = [p for p in registries.plugins if p.distribution.lower().replace(".", "-") == "fake-twice"]
    assert info.version == "2.0"  # the copy Python imports: the first on sys.path
    assert registries.strategies.get("twice_strategy").version == "2.0"
    assert "twice_strategy" not in registries.strategies.conflicts


def test_unzipped_egg_directory_is_found(site, monkeypatch: pytest.MonkeyPatch) -> None:
    egg = site.root / "fake_egg-1.5-py3.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: fake-egg\nVersion: 1.5\n")
    (egg / "EGG-INFO" / "entry_points.txt").write_text("[fabric]\nfake_egg = fake_egg_plugin\n")
    (egg / "fake_egg_plugin.py").write_text(site.strategy_plugin("egg_strategy"))
    monkeypatch.syspath_prepend(str(egg))  # what easy-install.pth does for an installed egg
    entry = get_registries().strategies.get("egg_strategy")
    assert (entry.distribution, entry.version) == ("fake-egg", "1.5")


# -- disabling plugins -------------------------------------------------------------------------------


@pytest.mark.parametrize("disable", ["broken_entry", "fake-broken"], ids=["entry point", "distribution"])
def test_disabled_plugin_is_not_imported(site, monkeypatch: pytest.MonkeyPatch, disable: str) -> None:
    # Strict mode stays on: a disabled plugin is never imported, so it cannot fail.
    module = site.add_plugin("fake-broken", site.BROKEN_IMPORT, entry="broken_entry")
    monkeypatch.setenv(manager.DISABLE_ENV, f"something_else, {disable}")
    registries = get_registries()
    assert module not in sys.modules
    assert site.info_of(registries, "fake-broken").disabled


def test_disabled_plugin_registers_nothing(site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND)
    monkeypatch.setenv(manager.DISABLE_ENV, "fake-everything")
    assert "fake_strategy" not in get_registries().strategies


# -- collisions and overrides ------------------------------------------------------------------------


def test_name_from_two_distributions_raises_naming_both(site) -> None:
    site.add_plugin("fake-alpha", site.strategy_plugin("shared"), version="1.0")
    site.add_plugin("fake-beta", site.strategy_plugin("shared", target="fake_targets:OtherStrategy"), version="2.0")
    with pytest.raises(ValueError, match="shared") as info:
        get_registries().strategies.get("shared")
    assert "fake-alpha 1.0" in str(info.value) and "fake-beta 2.0" in str(info.value)
    assert "override=True" in str(info.value)


def test_name_collision_leaves_other_names_working(site) -> None:
    site.add_plugin("fake-alpha", site.strategy_plugin("shared", "alpha_only"))
    site.add_plugin("fake-beta", site.strategy_plugin("shared"))
    registries = get_registries()
    assert registries.strategies.get("alpha_only").distribution == "fake-alpha"
    assert registries.strategies.get("ddp").distribution == "fabric-core"


def test_name_collision_is_listed_in_conflicts(site) -> None:
    site.add_plugin("fake-alpha", site.strategy_plugin("shared"))
    site.add_plugin("fake-beta", site.strategy_plugin("shared"))
    conflict = get_registries().strategies.conflicts["shared"]
    assert sorted(entry.distribution for entry in conflict) == ["fake-alpha", "fake-beta"]


@pytest.mark.parametrize(
    ("override_distribution", "plain_distribution"),
    [("fake-aaa-override", "fake-zzz-plain"), ("fake-zzz-override", "fake-aaa-plain")],
    ids=["override loads first", "override loads last"],
)
def test_override_wins_whatever_the_load_order(site, override_distribution: str, plain_distribution: str) -> None:
    site.add_plugin(
        override_distribution, site.strategy_plugin("shared", target="fake_targets:OtherStrategy", override=True)
    )
    site.add_plugin(plain_distribution, site.strategy_plugin("shared"))
    entry = get_registries().strategies.get("shared")
    assert (entry.distribution, entry.target) == (override_distribution, "fake_targets:OtherStrategy")


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_override_wins_over_two_plain_registrations_in_any_position(site, position: str) -> None:
    # Distributions load in name order; the override's name puts it first, between or after the others.
    prefix = {"first": "fake-a", "middle": "fake-m", "last": "fake-z"}[position]
    site.add_plugin("fake-b-plain", site.strategy_plugin("shared"))
    site.add_plugin("fake-y-plain", site.strategy_plugin("shared"))
    site.add_plugin(
        f"{prefix}-override", site.strategy_plugin("shared", target="fake_targets:OtherStrategy", override=True)
    )
    assert get_registries().strategies.get("shared").distribution == f"{prefix}-override"


def test_override_of_a_builtin_name_wins(site) -> None:
    site.add_plugin("fake-ddp", site.strategy_plugin("ddp", target="fake_targets:OtherStrategy", override=True))
    assert get_registries().strategies.get("ddp").distribution == "fake-ddp"


# -- unknown names -----------------------------------------------------------------------------------


def test_unknown_name_lists_the_available_names() -> None:
    with pytest.raises(ValueError, match=r"Unknown strategy 'singel_device'\. Available: .*'ddp'"):
        get_registries().strategies.get("singel_device")


def test_unknown_name_suggests_the_closest_name() -> None:
    with pytest.raises(ValueError, match=r"Did you mean 'single_device'\?"):
        get_registries().strategies.get("singel_device")


@pytest.mark.parametrize(
    ("kind", "name", "extra"),
    [
        ("strategies", "fsdp", "fsdp"),
        ("accelerators", "cuda", "cuda"),
        ("loggers", "csv", "loggers"),
        ("consolidators", "fsdp", "fsdp"),
    ],
)
def test_first_party_name_not_installed_says_what_to_install(without_plugins, kind: str, name: str, extra: str) -> None:
    without_plugins(extra)  # hidden, in case the sibling package is installed in this environment
    with pytest.raises(ValueError) as info:
        get_registries()[kind].get(name)
    assert f"is provided by fabric-{extra}" in str(info.value)
    assert f'pip install "fabric-core[{extra}]"' in str(info.value)


@pytest.mark.parametrize(
    ("kind", "name", "extra"),
    [
        ("strategies", "fsdp", "fsdp"),
        ("accelerators", "cuda", "cuda"),
        ("loggers", "csv", "loggers"),
        ("consolidators", "fsdp", "fsdp"),
    ],
)
def test_first_party_name_disabled_says_which_setting_disabled_it(
    site, monkeypatch: pytest.MonkeyPatch, kind: str, name: str, extra: str
) -> None:
    # Installed (here: faked, whether or not the real package is there) but disabled: no pip hint.
    site.add_distribution(f"fabric-{extra}", "9.9", {extra: "never_imported_plugin"})
    monkeypatch.setenv(manager.DISABLE_ENV, f"fabric-{extra}")
    with pytest.raises(ValueError) as info:
        get_registries()[kind].get(name)
    message = str(info.value)
    assert f"fabric-{extra}, which is installed but disabled by {manager.DISABLE_ENV}=fabric-{extra}" in message
    assert "pip install" not in message


# -- `fabric plugins` ----------------------------------------------------------------------------------


def test_plugins_json_lists_a_plugin_with_its_distribution_version_and_names(site) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND, version="1.2.3")
    result = site.run_fabric("plugins", "--json")
    assert result.returncode == 0, result.stderr
    (plugin,) = [p for p in json.loads(result.stdout)["plugins"] if p["distribution"] == "fake-everything"]
    assert (plugin["name"], plugin["version"], plugin["status"]) == ("fake_everything", "1.2.3", "ok")
    assert plugin["registered"]["strategies"] == ["fake_strategy"]
    assert plugin["registered"]["cluster_environments"] == ["fake_env"]


def test_plugins_json_reports_a_broken_plugin_and_exits_1(site) -> None:
    site.add_plugin("fake-broken", site.BROKEN_IMPORT, version="0.9.1")
    result = site.run_fabric("plugins", "--json")
    assert result.returncode == 1
    (plugin,) = [p for p in json.loads(result.stdout)["plugins"] if p["distribution"] == "fake-broken"]
    assert (plugin["version"], plugin["status"]) == ("0.9.1", "failed")
    assert "missing_dependency_of_the_plugin" in plugin["errors"][0]


def test_plugins_json_has_a_stable_schema(site, capsys: pytest.CaptureFixture[str]) -> None:
    assert plugins_cli.main(["--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"schema_version", "plugins", "conflicts"}
    (core,) = [p for p in document["plugins"] if p["distribution"] == "fabric-core"]
    assert set(core) == {
        "name",
        "distribution",
        "version",
        "module",
        "status",
        "registered",
        "overridden",
        "errors",
    }
    assert set(core["registered"]) == {
        "accelerators",
        "strategies",
        "precisions",
        "cluster_environments",
        "loggers",
        "commands",
        "consolidators",
    }


def test_plugins_json_lists_conflicts_and_exits_1(site, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-alpha", site.strategy_plugin("shared"), version="1.0")
    site.add_plugin("fake-beta", site.strategy_plugin("shared"), version="2.0")
    assert plugins_cli.main(["--json"]) == 1
    (conflict,) = json.loads(capsys.readouterr().out)["conflicts"]
    assert (conflict["kind"], conflict["name"]) == ("strategies", "shared")
    assert [s["distribution"] for s in conflict["registered_by"]] == ["fake-alpha", "fake-beta"]


def test_plugins_json_shows_which_plugin_overrode_a_name(site, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-ddp", site.strategy_plugin("ddp", override=True), version="3.0")
    plugins_cli.main(["--json"])
    (core,) = [p for p in json.loads(capsys.readouterr().out)["plugins"] if p["distribution"] == "fabric-core"]
    assert core["overridden"] == [
        {
            "kind": "strategies",
            "name": "ddp",
            "by": {"distribution": "fake-ddp", "version": "3.0", "plugin": "fake_ddp"},
        }
    ]


def test_plugins_text_shows_each_plugin_with_its_names(site, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND, version="1.2.3")
    assert plugins_cli.main([]) == 0
    out = capsys.readouterr().out
    assert "fake_everything  fake-everything 1.2.3  (fake_everything_plugin)" in out
    assert "fake_strategy" in out and "single_device" in out
    installed = len(get_registries().plugins)  # fabric-core, the fake one, and any sibling package installed
    assert out.rstrip().endswith(f"{installed} plugins: {installed} loaded, 0 failed, 0 disabled; 0 name conflicts")


def test_plugins_text_shows_a_failure_and_a_conflict(site, lenient: None, capsys: pytest.CaptureFixture[str]) -> None:
    site.add_plugin("fake-broken", site.BROKEN_IMPORT)
    site.add_plugin("fake-alpha", site.strategy_plugin("shared"), version="1.0")
    site.add_plugin("fake-beta", site.strategy_plugin("shared"), version="2.0")
    with pytest.warns(PluginLoadWarning):
        assert plugins_cli.main([]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "missing_dependency_of_the_plugin" in out
    assert "strategy 'shared': fake-alpha 1.0 (plugin 'fake_alpha'), fake-beta 2.0 (plugin 'fake_beta')" in out


def test_plugins_in_strict_mode_prints_the_error_and_exits_1(site) -> None:
    site.add_plugin("fake-broken", site.BROKEN_IMPORT)
    result = site.run_fabric("plugins", strict=True)
    assert result.returncode == 1
    assert "fake-broken" in result.stderr and "Traceback" not in result.stderr


def test_plugins_with_an_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugins_cli.main(["--bogus"]) == 2
    assert "--bogus" in capsys.readouterr().err


# -- commands added by plugins -----------------------------------------------------------------------


def test_plugin_command_is_dispatched_with_its_arguments(site) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND)
    result = site.run_fabric("hello", "big", "world")
    assert result.stdout.strip() == "hello from a plugin: big world"
    assert result.returncode == 3, result.stderr


def test_plugin_command_is_listed_in_help(site) -> None:
    site.add_plugin("fake-everything", site.EVERY_KIND)
    result = site.run_fabric("--help")
    assert result.returncode == 0, result.stderr
    assert any(line.split(None, 1) == ["hello", "Say hello from a plugin"] for line in result.stdout.splitlines())


def test_help_in_strict_mode_with_a_broken_plugin_prints_the_error_without_a_traceback(site) -> None:
    site.add_plugin("fake-broken", site.BROKEN_IMPORT)
    result = site.run_fabric("--help", strict=True)
    assert "fake-broken" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 1


def test_unknown_command_lists_the_builtin_commands_as_available(site) -> None:
    result = site.run_fabric("nonexistent")
    assert result.returncode == 2
    assert "plugins" in result.stderr and "run" in result.stderr
    assert "Available: none" not in result.stderr


def test_unknown_command_suggests_the_closest_builtin_command(site) -> None:
    result = site.run_fabric("plugin")
    assert "Did you mean 'plugins'?" in result.stderr
