"""No package uses another package's private names: what first-party plugins need, third parties can use too.

Every ``.py`` under ``packages/*/src`` is parsed. A module of one distribution may not import a
``_private`` module or name of another first-party distribution (``from fabric_core._lazy import ...``,
``from fabric_core.wrappers import _FabricModule``), read a ``_private`` attribute of a module imported
from one (``wrappers._FabricModule``), or name one in a ``"module"`` / ``"module:attr"`` string (lazy
exports, registry targets). Dunder names (``__version__``) are public; a package's own private
modules are its own business.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "packages").glob("*/src/*/**/*.py"))


def _first_party_packages() -> set[str]:
    return {path.name for path in (ROOT / "packages").glob("*/src/*") if (path / "__init__.py").exists()}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str, own: str, packages: set[str]) -> list[tuple[int, str]]:
    """``(line, what)`` for each use, in ``source`` of package ``own``, of another package's private name."""
    others = packages - {own}
    target = re.compile(rf"^(?:{'|'.join(map(re.escape, sorted(others)))})(?:\.\w+)*(?::[\w.]+)?$") if others else None
    found: list[tuple[int, str]] = []
    modules: set[str] = set()  # local names bound to modules (or objects) of another package

    def foreign(module: str) -> bool:
        return module.split(".")[0] in others

    def check_path(line: int, dotted: str) -> None:
        if any(_is_private(part) for part in re.split(r"[.:]", dotted)):
            found.append((line, dotted))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if foreign(alias.name):
                    check_path(node.lineno, alias.name)
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and foreign(node.module):
            for alias in node.names:
                check_path(node.lineno, f"{node.module}.{alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and target and target.match(node.value):
            check_path(node.lineno, node.value)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules:
                found.append((node.lineno, f"{ast.unparse(node.value)}.{node.attr}"))
    return found


def _own_package(path: Path) -> str:
    parts = path.relative_to(ROOT / "packages").parts  # (distribution, "src", package, ...)
    return parts[2]


def test_there_are_sources_to_check():
    assert {"fabric_core", "fabric_cuda", "fabric_fsdp", "fabric_loggers"} <= _first_party_packages()
    assert len(SOURCES) > 20


def test_no_package_uses_a_private_name_of_another_package():
    packages = _first_party_packages()
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in SOURCES
        for line, what in private_uses(path.read_text(encoding="utf-8"), _own_package(path), packages)
    ]
    assert not problems, (
        "These modules use private names of another package; give the name a public, documented home "
        "(see docs/plugins.md, 'What a plugin may use'):\n" + "\n".join(problems)
    )


PACKAGES = {"fabric_core", "my_plugin"}


@pytest.mark.parametrize(
    "source",
    [
        "from fabric_core._lazy import lazy_exports",
        "from fabric_core.wrappers import _FabricModule",
        "from fabric_core.wrappers import _FabricModule as Wrapped",
        "import fabric_core._lazy",
        "import fabric_core._lazy as lazy",
        "from fabric_core import wrappers\nwrappers._FabricModule",
        "import fabric_core.wrappers\nfabric_core.wrappers._FabricModule",
        "from fabric_core.plugins import registry\nregistry._registry._add",
        "def f():\n    from fabric_core.wrappers import _FabricModule",
        "TARGETS = {'X': 'fabric_core._lazy'}",
        "registry.register('x', 'fabric_core.wrappers:_FabricModule')",
    ],
)
def test_the_check_finds_a_private_use(source):
    assert private_uses(source, "my_plugin", PACKAGES)


@pytest.mark.parametrize(
    "source",
    [
        "from fabric_core.utilities.imports import lazy_exports",
        "from fabric_core.wrappers import is_wrapped",
        "from fabric_core import __version__",
        "from my_plugin._files import atomic_write",  # its own private module
        "from ._files import atomic_write",
        "import torch.distributed._composable",  # not a first-party package
        "from fabric_core.wrappers import is_wrapped\nmodel._private_state",  # not an imported module
        "'fabric_core.wrappers:is_wrapped'",
        "'see fabric_core._lazy for details'",  # prose, not a module path
    ],
)
def test_the_check_lets_public_and_own_names_pass(source):
    assert private_uses(source, "my_plugin", PACKAGES) == []
