"""A plugin's declared fabric-core range is checked at discovery; one built for another fabric-core is skipped.

Fake plugins declare their range as a ``Requires-Dist`` line of their METADATA, as pip installs it from
``dependencies = ["fabric-core>=X.Y,<X.(Y+1)"]``.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from fabric_core.__about__ import __version__ as CORE_VERSION
from fabric_core.plugins import manager
from fabric_core.plugins.compatibility import allows, core_specifier
from fabric_core.plugins.manager import PluginError, PluginLoadWarning, get_registries

_MAJOR, _MINOR = (int(part) for part in CORE_VERSION.split(".")[:2])
#: the range a plugin built for the running fabric-core declares, and one built for the next minor release
COMPATIBLE = f"fabric-core>={_MAJOR}.{_MINOR},<{_MAJOR}.{_MINOR + 1}"
NEXT = f">={_MAJOR}.{_MINOR + 1},<{_MAJOR}.{_MINOR + 2}"
INCOMPATIBLE = f"fabric-core{NEXT}"

PACKAGES = Path(__file__).resolve().parents[1] / "packages"
PLUGIN_PYPROJECTS = sorted(p for p in PACKAGES.glob("*/pyproject.toml") if p.parent.name != "fabric-core")


def _add_incompatible(site) -> str:
    return site.add_plugin(
        "fake-future", site.strategy_plugin("future_strategy"), version="3.0", requires=("torch>=2.4", INCOMPATIBLE)
    )


# -- compatible plugins load --------------------------------------------------------------------------


def test_plugin_whose_range_includes_the_running_core_loads(site) -> None:
    site.add_plugin("fake-current", site.strategy_plugin("current_strategy"), requires=(COMPATIBLE,))
    assert "current_strategy" in get_registries().strategies


def test_plugin_without_a_fabric_core_requirement_loads(site) -> None:
    site.add_plugin("fake-unpinned", site.strategy_plugin("unpinned_strategy"), requires=("torch>=2.4",))
    assert "unpinned_strategy" in get_registries().strategies


def test_requirement_of_an_extra_is_not_the_plugins_range(site) -> None:
    # Only `pip install fake-extra[dev]` asks for it; a plain install does not.
    requires = (COMPATIBLE, f'fabric-core{NEXT}; extra == "dev"')
    site.add_plugin("fake-extra", site.strategy_plugin("extra_strategy"), requires=requires)
    assert "extra_strategy" in get_registries().strategies


def test_requirement_whose_marker_does_not_hold_is_not_the_plugins_range(site) -> None:
    site.add_plugin(
        "fake-marker", site.strategy_plugin("marker_strategy"), requires=(f'{INCOMPATIBLE}; python_version < "3"',)
    )
    assert "marker_strategy" in get_registries().strategies


# -- incompatible plugins are skipped -------------------------------------------------------------------


def test_incompatible_plugin_is_not_imported(site, lenient: None) -> None:
    module = _add_incompatible(site)
    registries = site.discover_leniently()
    assert module not in sys.modules
    assert "future_strategy" not in registries.strategies


def test_incompatible_plugin_warning_names_both_versions_and_the_fixes(site, lenient: None) -> None:
    _add_incompatible(site)
    with pytest.warns(PluginLoadWarning) as warned:
        get_registries()
    (message,) = [str(w.message) for w in warned if issubclass(w.category, PluginLoadWarning)]
    assert f"fake-future 3.0 requires fabric-core{NEXT}" in message
    assert f"fabric-core {CORE_VERSION} is installed" in message
    assert f'pip install "fabric-core{NEXT}"' in message
    assert "pip install --upgrade fake-future" in message


def test_incompatible_plugin_is_reported_as_incompatible(site, lenient: None) -> None:
    _add_incompatible(site)
    info = site.info_of(site.discover_leniently(), "fake-future")
    assert info.incompatible and info.as_dict()["incompatible"]
    assert (info.registered, info.disabled) == ({}, False)
    assert "incompatible" in info.errors[0]


def test_unknown_name_of_an_incompatible_plugin_says_why_it_is_missing(site, lenient: None) -> None:
    _add_incompatible(site)
    with pytest.raises(ValueError, match="fake-future"):
        site.discover_leniently().strategies.get("future_strategy")


def test_incompatible_plugin_in_strict_mode_raises(site) -> None:
    _add_incompatible(site)
    with pytest.raises(PluginError, match=rf"fake-future 3\.0 requires fabric-core{NEXT}"):
        get_registries()


def test_disabled_incompatible_plugin_is_only_disabled(site, monkeypatch: pytest.MonkeyPatch) -> None:
    _add_incompatible(site)
    monkeypatch.setenv(manager.DISABLE_ENV, "fake-future")
    info = site.info_of(get_registries(), "fake-future")
    assert (info.disabled, info.incompatible, info.errors) == (True, False, [])


def test_plugins_json_shows_an_incompatible_plugin_and_exits_1(site) -> None:
    _add_incompatible(site)
    result = site.run_fabric("plugins", "--json")
    assert result.returncode == 1, result.stderr
    (plugin,) = [p for p in json.loads(result.stdout)["plugins"] if p["distribution"] == "fake-future"]
    assert (plugin["version"], plugin["status"]) == ("3.0", "incompatible")
    assert f'pip install "fabric-core{NEXT}"' in plugin["errors"][0]


def test_plugins_text_counts_an_incompatible_plugin_in_its_summary(site) -> None:
    _add_incompatible(site)
    result = site.run_fabric("plugins")
    assert result.returncode == 1, result.stderr
    assert "fake-future 3.0" in result.stdout and "INCOMPATIBLE" in result.stdout
    assert ", 1 incompatible, 0 disabled;" in result.stdout.splitlines()[-1]


# -- the range check itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requirements", "expected"),
    [
        (["fabric-core>=0.1,<0.2"], ">=0.1,<0.2"),
        (["torch>=2.4", "Fabric_Core (>=0.1, <0.2)"], ">=0.1, <0.2"),
        (["fabric.core[cli] ~=0.1.0"], "~=0.1.0"),
        (["fabric-core"], ""),
        (["fabric-core @ https://example.com/fabric_core-0.1.0-py3-none-any.whl"], ""),
        (["fabric-core>=0.1", "fabric-core<0.2"], ">=0.1,<0.2"),
        (["fabric-core>=9; extra == 'future'", "fabric-core-extras>=9"], None),
        (["torch"], None),
        ([], None),
    ],
)
def test_core_specifier_reads_the_fabric_core_range(requirements: list[str], expected: str | None) -> None:
    assert core_specifier(requirements) == expected


SPECIFIERS = [">=0.1,<0.2", "~=0.1", "~=0.1.0", "==0.1.*", "!=0.1.*", "==0.1", "!=0.1.0", "<=0.1", ">0.1", "<0.1.1"]
VERSIONS = ["0", "0.1", "0.1.0", "0.1.1", "0.1.0.1", "0.2.0", "0.10.0", "1.0", "0.2.0.dev1", "0.1.1rc1", "0.1.0+local"]


@pytest.mark.parametrize(("specifier", "version"), list(itertools.product(SPECIFIERS, VERSIONS)))
def test_allows_agrees_with_packaging(specifier: str, version: str) -> None:
    # Plain release numbers are decided without importing packaging; the answer must be packaging's.
    assert allows(specifier, version) == SpecifierSet(specifier).contains(version, prereleases=True)


@pytest.mark.parametrize("specifier", ["~=1", ">=0.1.*", "=>0.1", "0.1"])
def test_allows_rejects_an_invalid_specifier(specifier: str) -> None:
    with pytest.raises(ValueError, match="against"):
        allows(specifier, "0.1.0")


# -- first-party plugins ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pyproject", PLUGIN_PYPROJECTS, ids=lambda p: p.parent.name)
def test_first_party_plugin_declares_a_minor_range_that_includes_the_core(pyproject: Path) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads(pyproject.read_text())["project"]
    specifier = core_specifier(project["dependencies"])
    assert specifier == f">={_MAJOR}.{_MINOR},<{_MAJOR}.{_MINOR + 1}"
    assert allows(specifier, CORE_VERSION)
