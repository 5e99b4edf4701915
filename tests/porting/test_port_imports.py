"""The import mapping that ports a Lightning script (tests/porting/port.py) is the one docs/porting.md documents.

These need no Lightning: they run in every test environment.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PORTING_GUIDE = HERE.parent.parent / "docs" / "porting.md"


def import_table_rows() -> list[str]:
    """The table rows of the "Imports" section of docs/porting.md."""
    text = PORTING_GUIDE.read_text()
    match = re.search(r"^## Imports\n(.*?)(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "docs/porting.md has no '## Imports' section"
    return [line for line in match.group(1).splitlines() if line.startswith("|")]


def test_every_rule_of_the_mapping_is_a_row_of_the_porting_guide(port):
    rows = import_table_rows()
    undocumented = [
        f"{module}.{name} -> {target}"
        for (module, name), target in port.NAMED.items()
        if not any(f"`{module}." in row and name in row and f"`{target}" in row for row in rows)
    ]
    undocumented += [
        f"{prefix}.X -> {target}.X"
        for prefix, target in port.PREFIXES.items()
        if not any(f"`{prefix}.X`" in row and f"`{target}.X`" in row for row in rows)
    ]
    assert not undocumented, f"port.py maps imports that docs/porting.md's table does not list: {undocumented}"


def test_the_ported_script_differs_from_the_lightning_script_in_its_imports_only(port):
    original = (HERE / "lightning_script.py").read_text()
    ported = port.port_source(original)
    changed = [
        line[1:]
        for line in difflib.unified_diff(original.splitlines(), ported.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed, "porting changed nothing: the script does not import Lightning"
    assert all(line.startswith("from ") for line in changed), changed
    assert "lightning" not in "\n".join(line for line in ported.splitlines() if line.startswith(("from ", "import ")))


def test_names_from_one_lightning_module_may_land_in_several_packages(port):
    ported = port.port_source("from lightning.fabric.loggers import Logger, CSVLogger as Csv\n")
    assert ported == "from fabric_core.loggers import Logger\nfrom fabric_loggers import CSVLogger as Csv\n"


def test_utilities_keep_their_module_path(port):
    source = "from lightning.fabric.utilities.rank_zero import rank_zero_only\n"
    assert port.port_source(source) == "from fabric_core.utilities.rank_zero import rank_zero_only\n"


def test_an_import_spread_over_lines_and_indented_is_ported(port):
    source = (
        "def main():\n"
        "    from lightning.fabric import (\n"
        "        Fabric,\n"
        "        seed_everything as seed,\n"
        "    )\n"
        "    return Fabric\n"
    )
    ported = "def main():\n    from fabric_core import Fabric, seed_everything as seed\n    return Fabric\n"
    assert port.port_source(source) == ported


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("from lightning.fabric.plugins import MixedPrecision\n", id="a module the table does not list"),
        pytest.param("from lightning.fabric import Unknown\n", id="a name the table does not list"),
        pytest.param("from lightning.fabric.strategies import DataParallelStrategy\n", id="a class without a twin"),
        pytest.param("import lightning.fabric as L\n", id="lightning as a module"),
        pytest.param("from lightning.fabric import *\n", id="a star import"),
        pytest.param("import importlib\nimportlib.import_module('lightning.fabric')\n", id="an import by name"),
    ],
)
def test_an_import_the_table_does_not_cover_is_an_error(port, source):
    with pytest.raises(port.UnmappedImport, match="line"):
        port.port_source(source)
