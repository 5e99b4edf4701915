"""``fabric plugins new NAME``: a ready plugin package, generated from a template.

::

    fabric plugins new fastnet                      # ./fabric-fastnet, a precision plugin
    fabric plugins new fastnet --kind strategy      # precision, accelerator, strategy, cluster-environment, logger
    fabric plugins new fastnet --directory ~/src    # ~/src/fabric-fastnet

The package is named ``fabric-NAME`` (import package ``fabric_NAME``) and registers one name, ``NAME``,
through one hook. It installs (``pip install -e ".[test]"``), passes its tests (fabric-core's conformance
kit for its kind, and checks that the name is discovered) and shows in ``fabric plugins`` as generated;
then the class in ``src/fabric_NAME/`` is the author's to change.

The same from Python: ``create_plugin("fastnet", kind="strategy", directory="src")`` returns the new
folder. Exit status: 0 when the package was written; 2 for a bad name or option; 1 when the folder
already exists (nothing is ever overwritten).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

#: Lowercase words of letters and digits joined by single hyphens or underscores, starting with a letter.
_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
#: ``fabric-<name>`` of these is a first-party distribution.
_FIRST_PARTY = ("core", "cuda", "fsdp", "deepspeed", "xla", "bnb", "te", "loggers")


@dataclass(frozen=True)
class _Kind:
    """What differs between the kinds of plugin the template can make."""

    label: str  # "cluster environment": in prose
    hook: str
    registry: str  # the attribute of fabric_core.plugins.Registries
    module: str  # the module holding the class, in src/fabric_NAME/
    suffix: str  # of the class name
    kit: str  # the fabric_core.testing class the conformance test subclasses
    kit_settings: str  # the body of the conformance test class
    source: str  # the class module
    usage: str  # README: how a user picks the name
    tests: str  # test_plugin.py: a test of the name in use
    test_imports: str = "import torch\nfrom fabric_core import Fabric\n"  # what `tests` needs
    test_stdlib: str = ""  # the standard-library modules `tests` needs


_PRECISION = _Kind(
    label="precision",
    hook="fabric_register_precisions",
    registry="precisions",
    module="precision",
    suffix="Precision",
    kit="PrecisionConformance",
    kit_settings="    precision_factory = $cls\n",
    source='''\
"""$cls: float32 numerics, and a count of the forward passes run under it.

A starting point: replace the bodies with what your precision does (cast the module in
``convert_module``, return ``torch.autocast(...)`` from ``forward_context``, scale the loss in
``pre_backward``, ...). ``tests/test_conformance.py`` checks what every precision must do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fabric_core.precision import Precision


class $cls(Precision):
    """Plain float32 training that counts the forward passes of the models Fabric set up.

    Example::

        fabric = Fabric(accelerator="cpu", precision="$name")
        model = fabric.setup(torch.nn.Linear(4, 1))
        model(torch.randn(2, 4))
        fabric.strategy.precision.forward_calls  # 1
    """

    precision = "$name"

    def __init__(self) -> None:
        self.forward_calls = 0

    @contextmanager
    def forward_context(self) -> Iterator[None]:
        # Fabric runs every forward of a model it set up inside this context.
        self.forward_calls += 1
        yield

    def state_dict(self) -> dict[str, Any]:
        # Saved in every checkpoint by fabric.save, given back by fabric.load.
        return {"forward_calls": self.forward_calls}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.forward_calls = state_dict["forward_calls"]
''',
    usage='fabric = Fabric(accelerator="cpu", precision="$name")',
    tests="""

def test_fabric_runs_the_forward_under_the_precision():
    fabric = Fabric(accelerator="cpu", devices=1, precision=NAME)
    model = fabric.setup(torch.nn.Linear(4, 1))
    model(torch.randn(2, 4))
    assert isinstance(fabric.strategy.precision, $cls)
    assert fabric.strategy.precision.forward_calls == 1
""",
)

_ACCELERATOR = _Kind(
    label="accelerator",
    hook="fabric_register_accelerators",
    registry="accelerators",
    module="accelerator",
    suffix="Accelerator",
    kit="AcceleratorConformance",
    kit_settings="    accelerator_cls = $cls\n",
    source='''\
"""$cls: runs on the CPU under the name "$name".

A starting point: replace the CPU with your device (``device_type``, the availability check, the device
count). ``tests/test_conformance.py`` checks what every accelerator must do.
"""

from __future__ import annotations

from typing import Any

import torch
from fabric_core.accelerators import Accelerator


class $cls(Accelerator):
    """The CPU, under its own name: ``devices=N`` runs ``N`` processes.

    Example::

        fabric = Fabric(accelerator="$name", devices=1)
    """

    device_type = "cpu"  # the torch.device type of your devices
    # accelerator="auto" picks the available accelerator of highest priority; below the CPU's 0, this
    # stand-in is used only when asked for by name.
    priority = -1
    is_gpu = False  # whether accelerator="gpu" may pick it
    default_process_group_backend = "gloo"

    @staticmethod
    def is_available() -> bool:
        # Answer without initialising the device: the processes of a run may be forked after this.
        return True

    @staticmethod
    def parse_devices(devices: Any) -> int:
        value = int(devices) if isinstance(devices, str) and devices.strip().isdigit() else devices
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"devices={devices!r} is not valid for accelerator '$name': expected the number of processes, "
                "an int > 0 (e.g. devices=2)."
            )
        return value

    @staticmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        return [torch.device("cpu")] * $cls.parse_devices(devices)

    @staticmethod
    def auto_device_count() -> int:
        return 1
''',
    usage='fabric = Fabric(accelerator="$name", devices=1)',
    tests="""

def test_fabric_uses_the_accelerator_by_name():
    fabric = Fabric(accelerator=NAME, devices=1)
    assert isinstance(fabric.accelerator, $cls)
""",
    test_imports="from fabric_core import Fabric\n",
)

_STRATEGY = _Kind(
    label="strategy",
    hook="fabric_register_strategies",
    registry="strategies",
    module="strategy",
    suffix="Strategy",
    kit="StrategyConformance",
    kit_settings=(
        "    strategy_factory = $cls\n"
        "    processes = 1  # one process on one device: the kit's two-process checks skip (2 for a DDP subclass)\n"
    ),
    source='''\
"""$cls: one process on one device, counting the modules it sets up.

A starting point: override the strategy hooks you need (``setup_module``, ``backward``, the
collectives, ``save_checkpoint``, ...). For several processes, derive from
``fabric_core.strategies.DDPStrategy`` instead. ``tests/test_conformance.py`` checks what every strategy
must do.
"""

from __future__ import annotations

from typing import Any

from fabric_core.strategies import SingleDeviceStrategy
from torch.nn import Module


class $cls(SingleDeviceStrategy):
    """Like ``strategy="single_device"``, and counts the modules ``fabric.setup`` gave it.

    Example::

        fabric = Fabric(accelerator="cpu", devices=1, strategy="$name")
        model = fabric.setup(torch.nn.Linear(4, 1))
        fabric.strategy.modules_set_up  # 1
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.modules_set_up = 0

    def setup_module(self, module: Module) -> Module:
        self.modules_set_up += 1
        return super().setup_module(module)
''',
    usage='fabric = Fabric(accelerator="cpu", devices=1, strategy="$name")',
    tests="""

def test_fabric_sets_up_the_model_through_the_strategy():
    fabric = Fabric(accelerator="cpu", devices=1, strategy=NAME)
    fabric.setup(torch.nn.Linear(4, 1))
    assert isinstance(fabric.strategy, $cls)
    assert fabric.strategy.modules_set_up == 1
""",
)

_ENVIRONMENT = _Kind(
    label="cluster environment",
    hook="fabric_register_cluster_environments",
    registry="cluster_environments",
    module="environment",
    suffix="Environment",
    kit="ClusterEnvironmentConformance",
    kit_settings="""\
    environment_factory = $cls
    environment_variables = {
        "${prefix}_JOB_ID": "17",
        "${prefix}_WORLD_SIZE": "1",
        "${prefix}_RANK": "0",
        "${prefix}_LOCAL_RANK": "0",
        "${prefix}_NODE_RANK": "0",
    }
""",
    source='''\
"""$cls: a job started by the "$name" scheduler, recognised by its environment variables.

A starting point: replace the ``${prefix}_*`` variables with the ones your scheduler sets.
``tests/test_conformance.py`` checks what every cluster environment must do.
"""

from __future__ import annotations

import os

from fabric_core.environments import ClusterEnvironment


class $cls(ClusterEnvironment):
    """Detected when ``${prefix}_JOB_ID`` is set; ranks and sizes come from ``${prefix}_*`` variables.

    ``Fabric(...)`` takes the first registered environment whose ``detect()`` holds, so nothing is needed
    in the training script: run it inside the job and Fabric finds out where each process sits.
    """

    @property
    def creates_processes_externally(self) -> bool:
        return True  # the scheduler starts one process per device

    @property
    def main_address(self) -> str:
        return os.environ.get("${prefix}_MAIN_ADDRESS", "127.0.0.1")

    @property
    def main_port(self) -> int:
        return int(os.environ.get("${prefix}_MAIN_PORT", "29500"))

    @staticmethod
    def detect() -> bool:
        # Runs in every Fabric(...) while this plugin is installed: read variables, nothing more.
        return "${prefix}_JOB_ID" in os.environ

    def world_size(self) -> int:
        return int(os.environ.get("${prefix}_WORLD_SIZE", "1"))

    def set_world_size(self, size: int) -> None:
        pass  # fixed by the scheduler

    def global_rank(self) -> int:
        return int(os.environ.get("${prefix}_RANK", "0"))

    def set_global_rank(self, rank: int) -> None:
        pass  # fixed by the scheduler

    def local_rank(self) -> int:
        return int(os.environ.get("${prefix}_LOCAL_RANK", "0"))

    def node_rank(self) -> int:
        return int(os.environ.get("${prefix}_NODE_RANK", "0"))
''',
    usage="# nothing to pass: Fabric(...) detects the job when ${prefix}_JOB_ID is set\nfabric = Fabric()",
    tests="""

def test_detects_the_job_only_when_its_variables_are_set(monkeypatch):
    monkeypatch.delenv("${prefix}_JOB_ID", raising=False)
    assert not $cls.detect()
    monkeypatch.setenv("${prefix}_JOB_ID", "17")
    assert $cls.detect()
""",
    test_imports="",
)

_LOGGER = _Kind(
    label="logger",
    hook="fabric_register_loggers",
    registry="loggers",
    module="logger",
    suffix="Logger",
    kit="LoggerConformance",
    kit_settings="    logger_factory = $cls  # called with a fresh directory: $cls(tmp_path)\n",
    source='''\
"""$cls: one JSON line per ``log_metrics`` call, in ``<root_dir>/$name/metrics.jsonl``.

A starting point: send the records where your service wants them. ``tests/test_conformance.py`` checks
what every logger must do, among it that only global rank 0 writes.
"""

from __future__ import annotations

import json
import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from fabric_core.loggers import Logger
from fabric_core.utilities.rank_zero import rank_zero_only


class $cls(Logger):
    """Appends metrics to ``metrics.jsonl`` and hyperparameters to ``hparams.jsonl`` under :attr:`log_dir`.

    Example::

        fabric = Fabric(loggers="$name")  # or loggers=$cls("runs")
        fabric.log("loss", 0.5, step=1)  # {"step": 1, "loss": 0.5} in logs/$name/metrics.jsonl

    Every write opens, appends and closes the file: nothing is lost in a crash, and the logger holds no
    open file, so it pickles (spawn-based strategies send it to their processes).
    """

    def __init__(self, root_dir: str | os.PathLike[str] = "logs", name: str = "$name") -> None:
        self._root_dir = os.fspath(root_dir)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> None:
        return None  # one folder per name; return an int or a string to keep runs apart

    @property
    def root_dir(self) -> str:
        return self._root_dir

    @property
    def log_dir(self) -> str:
        return os.path.join(self._root_dir, self._name)

    # Users call a logger's methods on every rank: rank_zero_only makes the other ranks do nothing.
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._append("metrics.jsonl", {"step": step, **metrics})

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        self._append("hparams.jsonl", vars(params) if isinstance(params, Namespace) else dict(params))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        # "success", or "failed" when the run raised; may be called more than once.
        self._append("metrics.jsonl", {"status": status})

    def _append(self, filename: str, record: dict[str, Any]) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, filename), "a", encoding="utf-8") as file:
            file.write(json.dumps(record, default=str) + "\\n")
''',
    usage='fabric = Fabric(loggers="$name")  # writes logs/$name/metrics.jsonl',
    tests="""

def test_fabric_log_writes_a_json_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the name builds the logger with root_dir="logs", in the working directory
    fabric = Fabric(accelerator="cpu", devices=1, loggers=NAME)
    fabric.log("loss", 0.5, step=1)
    lines = (tmp_path / "logs" / NAME / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {"step": 1, "loss": 0.5}
""",
    test_stdlib="import json\n",
    test_imports="from fabric_core import Fabric\n",
)

#: ``--kind`` values; the first is the default.
KINDS: dict[str, _Kind] = {
    "precision": _PRECISION,
    "accelerator": _ACCELERATOR,
    "strategy": _STRATEGY,
    "cluster-environment": _ENVIRONMENT,
    "logger": _LOGGER,
}

_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "$distribution"
dynamic = ["version"]
description = "A $label plugin for fabric-core, registering '$name'."
readme = "README.md"
requires-python = ">=3.10"
# The fabric-core releases this plugin is written for. fabric-core checks the range when it discovers
# plugins, and skips this one (saying why) when the running release is outside it.
dependencies = ["fabric-core$core_range"]

[project.optional-dependencies]
test = ["pytest"]

# What makes this a plugin: fabric-core imports the module named here and calls its hooks.
[project.entry-points.fabric]
$name = "$package.plugin"

[tool.hatch.version]
path = "src/$package/__init__.py"

[tool.hatch.build]
dev-mode-dirs = ["src"]  # pip install -e puts src/ on the path with a .pth file, nothing more to install

[tool.hatch.build.targets.wheel]
packages = ["src/$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "--import-mode=importlib"

[tool.ruff]
line-length = 120
"""

_README = """\
# $distribution

A $label plugin for fabric-core: it registers the $label
`$name`. Made with `fabric plugins new $name --kind $kind`; the class in
`src/$package/$module.py` is where your code goes.

## Install

```bash
pip install -e ".[test]"    # from this folder; or pip install $distribution once published
```

## Use

```python
from fabric_core import Fabric

$usage
```

`fabric plugins` lists the plugin `$name` from $distribution, with `$name` under $registry_label.

## Test

```bash
pytest
```

- `tests/test_conformance.py` runs fabric-core's conformance kit for $registry_label (`$kit`) on `$cls`:
  every check is one test named for the behaviour it expects.
- `tests/test_plugin.py` checks that fabric-core discovers the plugin and that `$name` resolves to `$cls`.
- `tests/conftest.py` sets `FABRIC_STRICT_PLUGINS=1`, so a plugin that fails to load fails the tests
  instead of being skipped with a warning.

## Layout

| file | what it is |
|---|---|
| `pyproject.toml` | the `fabric` entry point, the fabric-core version range, the `test` extra |
| `src/$package/plugin.py` | the entry module: one hook registering `$name` with a lazy `"module:attr"` target |
| `src/$package/$module.py` | `$cls` |
| `tests/` | the conformance kit and the discovery checks |

Keep `plugin.py` cheap to import: fabric-core imports it in every process that resolves a name, so it
imports only `hookimpl`, and `$cls` is imported only when someone asks for `$name`.
"""

_INIT = '''\
"""$distribution: a $label plugin for fabric-core, registering `$name`.

The class is imported only when asked for: ``from $package.$module import $cls``.
"""

__version__ = "0.1.0"
'''

_PLUGIN = '''\
"""$distribution's entry module: registers the $label `$name`.

fabric-core imports this module when it discovers plugins, in every process that resolves a name, so it
imports nothing but ``hookimpl``: the class is named by a ``"module:attr"`` string and imported only
when someone asks for `$name`.
"""

from fabric_core.plugins import hookimpl


@hookimpl
def $hook(registry):
    registry.register(
        "$name",
        "$package.$module:$cls",
        description="$description",
    )
'''

_CONFORMANCE = '''\
"""fabric-core's conformance kit for $registry_label, run on $cls."""

from fabric_core.testing import $kit

from $package.$module import $cls


class Test$cls($kit):
$kit_settings'''

_TEST_PLUGIN = '''\
"""The plugin as fabric-core sees it: discovered, registering `$name`, which resolves to $cls."""

${test_stdlib}import subprocess
import sys

${test_imports}from fabric_core.plugins import get_registries

from $package.$module import $cls

NAME = "$name"


def test_the_name_is_discovered():
    assert NAME in get_registries().$registry.names()


def test_the_name_resolves_to_the_class():
    assert get_registries().$registry.load(NAME) is $cls


def test_the_entry_module_does_not_import_the_class():
    # Discovery imports plugin.py in every process; the class must wait until someone asks for it.
    code = "import sys, $package.plugin; print('$package.$module' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
$tests'''

_CONFTEST = '''\
"""A plugin that fails to load is an error in these tests, not a warning that skips it."""

import os

os.environ["FABRIC_STRICT_PLUGINS"] = "1"
'''


def validate_name(name: str) -> str:
    """Return ``name`` when it can name a plugin; raise ``ValueError`` saying what is expected otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid plugin name: expected lowercase letters and digits, words joined by single "
            "hyphens or underscores, starting with a letter (e.g. 'fastnet' or 'fast-net')."
        )
    if name in _FIRST_PARTY:
        raise ValueError(
            f"{name!r} would make the package fabric-{name}, a first-party fabric-core package: choose another name."
        )
    return name


def core_range(version: str) -> str:
    """The fabric-core requirement for a plugin written against ``version``: the same minor release.

    >>> core_range("0.1.0"), core_range("1.4.2"), core_range("0.2.0rc1")
    ('>=0.1,<0.2', '>=1.4,<1.5', '>=0.2.0.dev0,<0.3')
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"fabric-core's version {version!r} does not start with MAJOR.MINOR.")
    major, minor = int(match[1]), int(match[2])
    # A pre-release of X.Y sorts before X.Y, so ">=X.Y" would exclude the very version running now.
    lower = f"{major}.{minor}" if re.fullmatch(r"\d+(\.\d+)*", version) else f"{major}.{minor}.0.dev0"
    return f">={lower},<{major}.{minor + 1}"


def _camel(name: str) -> str:
    return "".join(word.capitalize() for word in re.split(r"[-_]", name))


def render(name: str, kind: str = "precision", core_version: str | None = None) -> dict[str, str]:
    """The files of the plugin package ``fabric-NAME``: path inside the package folder -> content."""
    validate_name(name)
    if kind not in KINDS:
        raise ValueError(f"Unknown plugin kind {kind!r}: expected one of {', '.join(KINDS)}.")
    if core_version is None:
        from fabric_core.__about__ import __version__ as core_version
    spec = KINDS[kind]
    package = "fabric_" + name.replace("-", "_")
    values = {
        "name": name,
        "kind": kind,
        "label": spec.label,
        "distribution": f"fabric-{name}",
        "package": package,
        "module": spec.module,
        "cls": _camel(name) + spec.suffix,
        "hook": spec.hook,
        "registry": spec.registry,
        "registry_label": spec.registry.replace("_", " "),
        "kit": spec.kit,
        "test_imports": spec.test_imports,
        "test_stdlib": spec.test_stdlib,
        "core_range": core_range(core_version),
        "prefix": name.upper().replace("-", "_"),
        "description": f"{_camel(name)}{spec.suffix}, made with fabric plugins new",
    }
    values["usage"] = Template(spec.usage).substitute(values)
    values["kit_settings"] = Template(spec.kit_settings).substitute(values)
    values["tests"] = Template(spec.tests).substitute(values)
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"src/{package}/__init__.py": _INIT,
        f"src/{package}/plugin.py": _PLUGIN,
        f"src/{package}/{spec.module}.py": spec.source,
        "tests/conftest.py": _CONFTEST,
        "tests/test_conformance.py": _CONFORMANCE,
        "tests/test_plugin.py": _TEST_PLUGIN,
    }
    return {path: Template(text).substitute(values) for path, text in files.items()}


def create_plugin(name: str, kind: str = "precision", directory: str | os.PathLike[str] = ".") -> Path:
    """Write the package ``fabric-NAME`` into ``directory`` and return its folder.

    Raises ``ValueError`` for a bad name or kind and ``FileExistsError`` when the folder exists. The files
    are written into a temporary folder that is renamed at the end, so a failure leaves nothing behind::

        folder = create_plugin("fastnet", kind="strategy", directory="src")  # src/fabric-fastnet
    """
    files = render(name, kind)
    parent = Path(directory)
    target = parent / f"fabric-{name}"
    if target.exists():
        raise FileExistsError(f"{target} already exists: remove it, or pick another name or --directory.")
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".fabric-{name}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabric plugins new",
        description="Create a plugin package, fabric-NAME, that registers NAME and passes its tests as generated.",
        epilog="Then: cd fabric-NAME && pip install -e '.[test]' && pytest && fabric plugins",
    )
    parser.add_argument("name", metavar="NAME", help="the name users will type (lowercase letters, digits, '-' or '_')")
    parser.add_argument(
        "--kind", choices=list(KINDS), default="precision", help="what the plugin registers (default: precision)"
    )
    parser.add_argument("--directory", default=".", metavar="PATH", help="where to create fabric-NAME (default: here)")
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``fabric plugins new``; returns the exit status described in the module docstring."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exit_:  # --help, or a bad option already reported by argparse
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        folder = create_plugin(args.name, args.kind, args.directory)
    except ValueError as err:
        print(f"fabric plugins new: {err}", file=sys.stderr)
        return 2
    except FileExistsError as err:
        print(f"fabric plugins new: {err} Nothing was written.", file=sys.stderr)
        return 1
    shown = os.path.relpath(folder) if not Path(args.directory).is_absolute() else str(folder)
    spec = KINDS[args.kind]
    print(f"Created {shown}: a {spec.label} plugin registering {args.name!r}.")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        print(f"  {os.path.join(shown, path.relative_to(folder))}")
    print("\nNext:")
    print(f"  cd {shown}")
    print('  pip install -e ".[test]"')
    print("  pytest")
    print(f"  fabric plugins    # lists {args.name!r} from fabric-{args.name}")
    return 0
