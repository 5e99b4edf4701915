"""``fabric plugins new``: the plugin template makes a package that installs, passes its tests and shows up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fabric_core.__about__ import __version__
from fabric_core.cli import main as fabric
from fabric_core.cli.new_plugin import KINDS, core_range, create_plugin, render


def _pyproject(name: str = "fastnet", kind: str = "precision") -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading TOML needs Python 3.11")
    return tomllib.loads(render(name, kind)["pyproject.toml"])


# -- the command line ------------------------------------------------------------------------------


def test_new_creates_the_package_folder_and_prints_the_next_commands(tmp_path, capsys):
    assert fabric(["plugins", "new", "fastnet", "--directory", str(tmp_path)]) == 0
    folder = tmp_path / "fabric-fastnet"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "README.md",
        "pyproject.toml",
        "src/fabric_fastnet/__init__.py",
        "src/fabric_fastnet/plugin.py",
        "src/fabric_fastnet/precision.py",
        "tests/conftest.py",
        "tests/test_conformance.py",
        "tests/test_plugin.py",
    ]
    out = capsys.readouterr().out
    assert str(folder / "pyproject.toml") in out
    for command in ('pip install -e ".[test]"', "pytest", "fabric plugins"):
        assert command in out


def test_new_creates_the_package_in_the_current_directory_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fabric(["plugins", "new", "fast_net", "--kind", "strategy"]) == 0
    assert (tmp_path / "fabric-fast_net" / "src" / "fabric_fast_net" / "strategy.py").is_file()


@pytest.mark.parametrize("name", ["FastNet", "9lives", "fast net", "fast-", "fast--net", "fast.net", "_fast", "fäst"])
def test_a_bad_name_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, name):
    assert fabric(["plugins", "new", name, "--directory", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert repr(name) in err and "lowercase letters" in err
    assert list(tmp_path.iterdir()) == []


def test_a_first_party_name_is_refused(tmp_path, capsys):
    assert fabric(["plugins", "new", "cuda", "--directory", str(tmp_path)]) == 2
    assert "fabric-cuda" in capsys.readouterr().err


def test_an_unknown_kind_exits_2(tmp_path, capsys):
    assert fabric(["plugins", "new", "fastnet", "--kind", "optimizer", "--directory", str(tmp_path)]) == 2
    assert "optimizer" in capsys.readouterr().err


def test_an_existing_folder_is_refused_and_left_as_it_was(tmp_path, capsys):
    existing = tmp_path / "fabric-fastnet"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    assert fabric(["plugins", "new", "fastnet", "--directory", str(tmp_path)]) == 1
    assert str(existing) in capsys.readouterr().err
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]
    assert (existing / "mine.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["fabric-fastnet"]  # no staging folder left behind


def test_create_plugin_raises_file_exists_error_for_an_existing_folder(tmp_path):
    create_plugin("fastnet", directory=tmp_path)
    with pytest.raises(FileExistsError, match="fabric-fastnet already exists"):
        create_plugin("fastnet", directory=tmp_path)


def test_plugins_help_mentions_new(capsys):
    assert fabric(["plugins", "--help"]) == 0
    assert "fabric plugins new NAME" in capsys.readouterr().out


# -- what the package declares ---------------------------------------------------------------------


def test_the_fabric_core_range_admits_the_running_version_and_no_other_minor_release():
    (requirement,) = _pyproject()["project"]["dependencies"]
    assert requirement == f"fabric-core{core_range(__version__)}"
    specifier = SpecifierSet(requirement.removeprefix("fabric-core"), prereleases=True)
    running = Version(__version__)
    assert running in specifier
    assert Version(f"{running.major}.{running.minor + 1}.0") not in specifier
    assert Version(f"{running.major}.{running.minor}.0") in specifier


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.1.0", ">=0.1,<0.2"),
        ("1.4.2", ">=1.4,<1.5"),
        ("0.2.0rc1", ">=0.2.0.dev0,<0.3"),  # a pre-release sorts before 0.2: the bound must admit it
        ("2.0.0.dev3", ">=2.0.0.dev0,<2.1"),
    ],
)
def test_core_range_spans_the_minor_release(version, expected):
    assert core_range(version) == expected


def test_the_pyproject_declares_hatchling_the_entry_point_and_a_test_extra():
    pyproject = _pyproject("fast-net")
    assert pyproject["build-system"]["build-backend"] == "hatchling.build"
    assert pyproject["project"]["name"] == "fabric-fast-net"
    assert pyproject["project"]["entry-points"]["fabric"] == {"fast-net": "fabric_fast_net.plugin"}
    assert pyproject["project"]["optional-dependencies"]["test"] == ["pytest"]
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/fabric_fast_net"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_entry_module_registers_one_name_through_one_hook_with_a_lazy_target(kind):
    spec = KINDS[kind]
    namespace: dict = {}
    exec(compile(render("fastnet", kind)["src/fabric_fastnet/plugin.py"], "plugin.py", "exec"), namespace)
    hooks = [value for key, value in namespace.items() if key.startswith("fabric_register_")]
    assert [hook.__name__ for hook in hooks] == [spec.hook]

    registered = []

    class Recorder:
        def register(self, name, target, **kwargs):
            registered.append((name, target))

    hooks[0](Recorder())
    assert registered == [("fastnet", f"fabric_fastnet.{spec.module}:Fastnet{spec.suffix}")]
    # Import-cheap: the module holds the hook and what it imported, which is hookimpl alone.
    assert {key for key in namespace if not key.startswith("__")} == {"hookimpl", spec.hook}


@pytest.mark.parametrize("kind", KINDS)
def test_every_generated_python_file_compiles(kind):
    for path, text in render("fastnet", kind).items():
        if path.endswith(".py"):
            compile(text, path, "exec")


def test_the_conftest_turns_strict_plugins_on():
    assert 'os.environ["FABRIC_STRICT_PLUGINS"] = "1"' in render("fastnet")["tests/conftest.py"]


# -- installed for real -----------------------------------------------------------------------------


def _run(args: list[str], cwd: Path, site: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "FABRIC_STRICT_PLUGINS": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def installed(tmp_path):
    """Generate ``fabric-fastnet`` of a kind and pip-install it, offline, into a folder of its own."""

    def install(kind: str) -> tuple[Path, Path]:
        package = create_plugin("fastnet", kind, tmp_path)
        site = tmp_path / "site"
        pip = ["-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        result = _run([*pip, "--target", str(site), str(package)], cwd=tmp_path, site=tmp_path / "none", timeout=180)
        assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
        return package, site

    return install


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_the_installed_plugin_is_listed_ok_by_fabric_plugins(installed, tmp_path, kind):
    _, site = installed(kind)
    result = _run(["-m", "fabric_core", "plugins", "--json"], cwd=tmp_path, site=site, timeout=120)
    assert result.returncode == 0, result.stderr
    plugins = {plugin["name"]: plugin for plugin in json.loads(result.stdout)["plugins"]}
    plugin = plugins["fastnet"]
    assert (plugin["distribution"], plugin["version"], plugin["status"]) == ("fabric-fastnet", "0.1.0", "ok")
    assert plugin["registered"][KINDS[kind].registry] == ["fastnet"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_the_installed_plugin_passes_its_own_tests(installed, tmp_path, kind):
    package, site = installed(kind)
    result = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")], tmp_path, site, 600)
    assert result.returncode == 0, f"the generated tests failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert " passed" in result.stdout
