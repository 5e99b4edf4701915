"""Fake plugin distributions installed on disk, for the tests of plugin discovery and resolution.

The ``site`` fixture is a folder on ``sys.path``; ``site.add_plugin(...)`` writes a
``<name>-<version>.dist-info`` folder (METADATA and an ``entry_points.txt`` declaring the ``fabric``
group) and the plugin module into it. Each test discovers anew.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_core.plugins import manager
from fabric_core.plugins.manager import PluginLoadWarning, get_registries

#: Classes and a command for fake plugins to point at; a module of its own so laziness is visible.
#: Each class subclasses its kind's base, as registered targets must.
TARGETS = """
from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.io.consolidate import CheckpointConsolidator
from fabric_core.loggers.logger import Logger
from fabric_core.precision.precision import Precision
from fabric_core.strategies.strategy import Strategy

class FakeAccelerator(Accelerator): pass
class FakeStrategy(Strategy): pass
class OtherStrategy(Strategy): pass
class FakePrecision(Precision): pass
class FakeEnvironment(ClusterEnvironment): pass
class FakeLogger(Logger): pass

class FakeConsolidator(CheckpointConsolidator):
    def recognizes(self, path):
        return (path / "fake.format").is_file()

    def consolidate(self, path, output):
        raise ValueError("a fake format")

def hello(args):
    print("hello from a plugin:", " ".join(args))
    return 3
"""

#: One plugin registering a name of every kind, each a lazy "module:attr" target.
EVERY_KIND = """
from fabric_core.plugins import hookimpl

@hookimpl
def fabric_register_accelerators(registry):
    registry.register("fake_accel", "fake_targets:FakeAccelerator")

@hookimpl
def fabric_register_strategies(registry):
    registry.register("fake_strategy", "fake_targets:FakeStrategy", description="a fake strategy")

@hookimpl
def fabric_register_precisions(registry):
    registry.register("fake-precision", "fake_targets:FakePrecision")

@hookimpl
def fabric_register_cluster_environments(registry):
    registry.register("fake_env", "fake_targets:FakeEnvironment")

@hookimpl
def fabric_register_loggers(registry):
    registry.register("fake_logger", "fake_targets:FakeLogger")

@hookimpl
def fabric_register_cli_commands(registry):
    registry.register("hello", "fake_targets:hello", description="Say hello from a plugin")

@hookimpl
def fabric_register_checkpoint_consolidators(registry):
    registry.register("fake_format", "fake_targets:FakeConsolidator")
"""

BROKEN_IMPORT = "import missing_dependency_of_the_plugin\n" + EVERY_KIND

RAISING_HOOK = """
from fabric_core.plugins import hookimpl

@hookimpl
def fabric_register_strategies(registry):
    registry.register("half_done", "fake_targets:FakeStrategy")
    raise RuntimeError("the hook broke halfway")
"""


class Site:
    """A folder on ``sys.path`` that fake distributions are installed into."""

    TARGETS = TARGETS
    EVERY_KIND = EVERY_KIND
    BROKEN_IMPORT = BROKEN_IMPORT
    RAISING_HOOK = RAISING_HOOK

    @staticmethod
    def strategy_plugin(*names: str, target: str = "fake_targets:FakeStrategy", **options: object) -> str:
        """The source of a plugin registering each of ``names`` as a strategy for ``target``."""
        arguments = "".join(f", {key}={value!r}" for key, value in options.items())
        calls = "".join(f"\n    registry.register({name!r}, {target!r}{arguments})" for name in names)
        header = "from fabric_core.plugins import hookimpl\n\n@hookimpl\ndef fabric_register_strategies(registry):"
        return f"{header}{calls}\n"

    @staticmethod
    def discover_leniently() -> manager.Registries:
        """Discover with strict mode off, expecting at least one plugin to be skipped with a warning."""
        with pytest.warns(PluginLoadWarning):
            return get_registries()

    @staticmethod
    def info_of(registries: manager.Registries, distribution: str) -> manager.PluginInfo:
        (info,) = [p for p in registries.plugins if p.distribution == distribution]
        return info

    def run_fabric(self, *args: str, strict: bool = False) -> subprocess.CompletedProcess:
        """``python -m fabric_core ARGS`` in a fresh process that sees this site's plugins."""
        env = {k: v for k, v in os.environ.items() if k not in (manager.STRICT_ENV, manager.DISABLE_ENV)}
        if strict:
            env[manager.STRICT_ENV] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        return subprocess.run(
            [sys.executable, "-m", "fabric_core", *args], env=env, capture_output=True, text=True, timeout=60
        )

    def __init__(self, root: Path) -> None:
        self.root = root
        self.add_module("fake_targets", TARGETS)

    def add_module(self, name: str, source: str) -> None:
        (self.root / f"{name}.py").write_text(source)

    def add_distribution(
        self, name: str, version: str, entry_points: dict[str, str], requires: tuple[str, ...] = ()
    ) -> None:
        """Write ``name``'s dist-info: METADATA (with a ``Requires-Dist`` line per ``requires``) and entry points."""
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        headers = "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{headers}")
        lines = "".join(f"{entry} = {module}\n" for entry, module in entry_points.items())
        (info / "entry_points.txt").write_text(f"[fabric]\n{lines}")
        importlib.invalidate_caches()  # importlib.metadata caches directory listings

    def add_plugin(
        self,
        distribution: str,
        source: str,
        version: str = "1.0",
        entry: str | None = None,
        requires: tuple[str, ...] = (),
    ) -> str:
        """Install ``distribution`` with one plugin module holding ``source``; returns the module name."""
        module = distribution.replace("-", "_") + "_plugin"
        self.add_module(module, source)
        self.add_distribution(distribution, version, {entry or distribution.replace("-", "_"): module}, requires)
        return module


@pytest.fixture(autouse=True)
def _fresh_discovery(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test discovers anew, and the next one does not see this one's plugins."""
    monkeypatch.delenv(manager.DISABLE_ENV, raising=False)
    manager.reset()
    yield
    manager.reset()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Site(tmp_path)
    # Forget the fake modules (every test reuses their names); modules imported from elsewhere stay,
    # or classes defined twice would break isinstance checks in later tests.
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken plugins are skipped with a warning (the repository's conftest makes them errors)."""
    monkeypatch.delenv(manager.STRICT_ENV, raising=False)
