"""Port a Lightning Fabric script to fabric-core by changing its imports, as docs/porting.md says.

The rules below are the "Imports" table of docs/porting.md, one entry per row, applied the way a user
applies the table by hand: every ``from lightning... import name`` becomes an import of the same
name from the module the table gives. Nothing else in the script changes. Whatever the table does
not cover (a name it does not list, ``import lightning...`` used as a module, a star import) is an
error naming the line, never a silent pass-through: the ported script must be what a user would
have after porting, and runs without Lightning installed.

    python tests/porting/port.py lightning_script.py > ported_script.py
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize

#: ``(Lightning module, name) -> fabric-core module``: the named rows of docs/porting.md's table.
NAMED: dict[tuple[str, str], str] = {
    ("lightning.fabric", "Fabric"): "fabric_core",
    ("lightning.fabric.fabric", "Fabric"): "fabric_core",
    ("lightning.fabric", "seed_everything"): "fabric_core",
    ("lightning.fabric.utilities.seed", "seed_everything"): "fabric_core",
    **{
        ("lightning.fabric.accelerators", n): "fabric_core.accelerators"
        for n in ("Accelerator", "CPUAccelerator", "MPSAccelerator")
    },
    ("lightning.fabric.accelerators", "CUDAAccelerator"): "fabric_cuda",
    **{
        ("lightning.fabric.strategies", n): "fabric_core.strategies"
        for n in ("Strategy", "SingleDeviceStrategy", "DDPStrategy", "ParallelStrategy")
    },
    **{("lightning.fabric.strategies", n): "fabric_fsdp" for n in ("FSDPStrategy", "ModelParallelStrategy")},
    ("lightning.fabric.strategies", "DeepSpeedStrategy"): "fabric_deepspeed",
    **{
        ("lightning.fabric.strategies", n): "fabric_xla"
        for n in ("XLAStrategy", "XLAFSDPStrategy", "SingleDeviceXLAStrategy")
    },
    **{
        ("lightning.fabric.plugins.precision", n): "fabric_core.precision"
        for n in ("Precision", "DoublePrecision", "HalfPrecision", "MixedPrecision")
    },
    ("lightning.fabric.plugins.precision", "FSDPPrecision"): "fabric_fsdp",
    ("lightning.fabric.plugins.precision", "DeepSpeedPrecision"): "fabric_deepspeed",
    ("lightning.fabric.plugins.precision", "XLAPrecision"): "fabric_xla",
    ("lightning.fabric.plugins.precision", "BitsandbytesPrecision"): "fabric_bnb",
    ("lightning.fabric.plugins.precision", "TransformerEnginePrecision"): "fabric_te",
    **{
        ("lightning.fabric.plugins.environments", n): "fabric_core.environments"
        for n in (
            "ClusterEnvironment",
            "LightningEnvironment",
            "SLURMEnvironment",
            "TorchElasticEnvironment",
            "KubeflowEnvironment",
            "LSFEnvironment",
            "MPIEnvironment",
        )
    },
    **{("lightning.fabric.plugins.io", n): "fabric_core.io" for n in ("CheckpointIO", "TorchCheckpointIO")},
    ("lightning.fabric.loggers", "Logger"): "fabric_core.loggers",
    **{("lightning.fabric.loggers", n): "fabric_loggers" for n in ("CSVLogger", "TensorBoardLogger")},
}

#: ``Lightning package -> fabric-core package``: the table's ``lightning.fabric.utilities.X`` row,
#: which keeps every module path and name below it.
PREFIXES: dict[str, str] = {"lightning.fabric.utilities": "fabric_core.utilities"}


class UnmappedImport(ValueError):
    """An import of Lightning that docs/porting.md's table does not say how to port."""


def target_module(module: str, name: str, line: int) -> str:
    """The fabric-core module that ``from <module> import <name>`` (line ``line``) imports from once ported."""
    if (module, name) in NAMED:
        return NAMED[(module, name)]
    for prefix, replacement in PREFIXES.items():
        if module == prefix or module.startswith(prefix + "."):
            return replacement + module[len(prefix) :]
    raise UnmappedImport(f"line {line}: `from {module} import {name}` is not in docs/porting.md's import table")


def _is_lightning(module: str | None) -> bool:
    return module is not None and (module == "lightning" or module.startswith("lightning."))


def _ported_import(node: ast.ImportFrom) -> str:
    """The ``from fabric_... import ...`` lines replacing one Lightning ``from`` import, names kept in order."""
    by_module: dict[str, list[str]] = {}
    for alias in node.names:
        if alias.name == "*":
            raise UnmappedImport(f"line {node.lineno}: `from {node.module} import *` cannot be ported name by name")
        target = target_module(node.module, alias.name, node.lineno)
        spelled = alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"
        by_module.setdefault(target, []).append(spelled)
    return "\n".join(f"from {module} import {', '.join(names)}" for module, names in by_module.items())


def port_source(source: str) -> str:
    """Return ``source`` with each Lightning Fabric import replaced by its fabric-core twin.

    Raises:
        UnmappedImport: An import the table does not cover, or ``lightning`` left in the code after porting.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    replacements: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_lightning(alias.name):
                    raise UnmappedImport(
                        f"line {node.lineno}: `import {alias.name}` uses Lightning as a module; the table maps "
                        "`from ... import name` imports"
                    )
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_lightning(node.module):
            indent = lines[node.lineno - 1][: node.col_offset]
            ported = "\n".join(indent + line for line in _ported_import(node).splitlines())
            replacements.append((node.lineno, node.end_lineno, ported + "\n"))
    for first, last, text in sorted(replacements, reverse=True):
        lines[first - 1 : last] = [text]
    ported = "".join(lines)
    _check_no_lightning_left(ported)
    return ported


def _check_no_lightning_left(source: str) -> None:
    """Fail on any ``lightning`` name left in the code (an attribute chain, ``importlib.import_module``...)."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.string == "lightning":
            raise UnmappedImport(f"line {token.start[0]}: `lightning` is still used once ported: {token.line.strip()}")
        if token.type == tokenize.STRING and "lightning." in token.string:
            raise UnmappedImport(f"line {token.start[0]}: a string names a Lightning module: {token.string}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python port.py LIGHTNING_SCRIPT.py > PORTED.py")
    with open(sys.argv[1]) as f:
        sys.stdout.write(port_source(f.read()))
