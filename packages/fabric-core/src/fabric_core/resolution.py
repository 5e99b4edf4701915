"""Turning ``Fabric(...)`` flags into objects: a short pipeline of small steps.

validate flags -> apply ``fabric run`` values -> accelerator -> devices -> cluster environment ->
strategy -> precision -> connect them. Every configuration error is raised here, before a process,
a device or a file is touched.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.loggers.logger import Logger
from fabric_core.precision.precision import Precision
from fabric_core.strategies.strategy import Strategy
from fabric_core.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fabric_core.plugins.registry import Entry, Registry

CLI_ENV = "FABRIC_CLI_USED"
#: Fabric flag -> (environment variable set by ``fabric run``, the command-line option)
CLI_FLAGS = {
    "accelerator": ("FABRIC_ACCELERATOR", "--accelerator"),
    "strategy": ("FABRIC_STRATEGY", "--strategy"),
    "devices": ("FABRIC_DEVICES", "--devices"),
    "num_nodes": ("FABRIC_NUM_NODES", "--num-nodes"),
    "precision": ("FABRIC_PRECISION", "--precision"),
}
DEFAULTS: dict[str, Any] = {
    "accelerator": "auto",
    "strategy": "auto",
    "devices": "auto",
    "num_nodes": 1,
    "precision": None,
}
#: Spellings Lightning accepts for the built-in precisions.
PRECISION_ALIASES: dict[Any, str] = {
    64: "64-true",
    "64": "64-true",
    32: "32-true",
    "32": "32-true",
    16: "16-mixed",
    "16": "16-mixed",
    "bf16": "bf16-mixed",
}


def is_using_cli() -> bool:
    """Whether this process was started by ``fabric run``."""
    return os.environ.get(CLI_ENV) == "1"


def is_interactive() -> bool:
    """Whether this runs in a notebook or an interactive interpreter (no script to re-run)."""
    import __main__

    return hasattr(sys, "ps1") or not hasattr(__main__, "__file__")


class Resolved:
    """The outcome of resolution.

    A plain slotted class rather than a dataclass: defining a dataclass costs about 0.4 ms, paid by
    the first ``Fabric(...)`` of every process.
    """

    __slots__ = ("accelerator", "callbacks", "cluster_environment", "loggers", "precision", "strategy")

    def __init__(
        self,
        accelerator: Accelerator,
        strategy: Strategy,
        precision: Precision,
        cluster_environment: ClusterEnvironment | None,
        callbacks: list[Any],
        loggers: list[Logger],
    ) -> None:
        self.accelerator = accelerator
        self.strategy = strategy
        self.precision = precision
        self.cluster_environment = cluster_environment
        self.callbacks = callbacks
        self.loggers = loggers


# -- step 1: flags and the CLI -----------------------------------------------------------------------


def apply_cli_values(flags: dict[str, Any]) -> dict[str, Any]:
    """Fill flags left at their defaults from ``fabric run``; a conflicting value in code is an error."""
    if not is_using_cli():
        return flags
    flags = dict(flags)
    for name, (variable, option) in CLI_FLAGS.items():
        raw = os.environ.get(variable)
        if raw is None:
            continue
        current = flags[name]
        if current == DEFAULTS[name] or str(current) == raw or _same_precision(name, current, raw):
            flags[name] = int(raw) if name == "num_nodes" else raw
            continue
        raise ValueError(
            f"Fabric({name}={current!r}) in your code conflicts with `fabric run {option} {raw}`. A value set in "
            f"code is never overridden silently: remove it from the code or from the command line."
        )
    return flags


def _same_precision(name: str, current: Any, raw: str) -> bool:
    if name != "precision" or isinstance(current, Precision):
        return False
    return PRECISION_ALIASES.get(current, current) == PRECISION_ALIASES.get(raw, raw)


def validate_flags(flags: dict[str, Any]) -> None:
    """Type checks of every flag, naming the bad value and what is accepted."""
    accelerator = flags["accelerator"]
    if not isinstance(accelerator, (str, Accelerator)):
        raise TypeError(
            f"Fabric(accelerator={accelerator!r}) must be a name such as 'cpu', 'cuda', 'gpu' or 'auto', or an "
            f"Accelerator instance; got {type(accelerator).__name__}."
        )
    strategy = flags["strategy"]
    if not isinstance(strategy, (str, Strategy)):
        raise TypeError(
            f"Fabric(strategy={strategy!r}) must be a name such as 'ddp' or 'auto', or a Strategy instance; got "
            f"{type(strategy).__name__}."
        )
    devices = flags["devices"]
    if isinstance(devices, bool) or not isinstance(devices, (int, str, list, tuple)):
        raise TypeError(
            f"Fabric(devices={devices!r}) must be an int (how many), a list of device indices, a string such as "
            f"'2' or '0,1', or 'auto'; got {type(devices).__name__}."
        )
    num_nodes = flags["num_nodes"]
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"Fabric(num_nodes={num_nodes!r}) must be an int >= 1.")
    precision = flags["precision"]
    if precision is not None and (isinstance(precision, bool) or not isinstance(precision, (int, str, Precision))):
        raise TypeError(
            f"Fabric(precision={precision!r}) must be a name such as '32-true', 'bf16-mixed', '16-mixed', "
            f"'64-true', or a Precision instance; got {type(precision).__name__}."
        )


def split_plugins(plugins: Any) -> tuple[Precision | None, ClusterEnvironment | None, CheckpointIO | None]:
    """Sort ``plugins=`` into its precision, cluster environment and checkpoint IO (at most one each)."""
    if plugins is None:
        return None, None, None
    items = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    found: dict[type, Any] = {}
    for item in items:
        for kind in (Precision, ClusterEnvironment, CheckpointIO):
            if isinstance(item, kind):
                if kind in found:
                    raise ValueError(
                        f"Fabric(plugins=...) got two {kind.__name__} plugins: {found[kind]!r} and {item!r}. "
                        "Pass at most one of each kind."
                    )
                found[kind] = item
                break
        else:
            raise TypeError(
                f"Fabric(plugins=...) got {item!r} ({type(item).__name__}), which is not a plugin: expected a "
                "Precision, ClusterEnvironment or CheckpointIO instance. Pass accelerators and strategies with "
                "accelerator= and strategy=, loggers with loggers=."
            )
    return found.get(Precision), found.get(ClusterEnvironment), found.get(CheckpointIO)


# -- asking a registered class -----------------------------------------------------------------------


def ask(entry: Entry, question: str) -> Any:
    """Load ``entry`` and call its class's static ``question`` (``"is_available"``, ``"detect"``).

    Every failure names the registration and its plugin: ``ImportError`` or ``TypeError`` from loading
    it (see :meth:`Entry.load`), ``RuntimeError`` when the question itself raises.
    """
    cls = entry.load()
    try:
        return getattr(cls, question)()
    except Exception as err:
        raise RuntimeError(f"{entry.who}: {cls.__qualname__}.{question}() raised {type(err).__name__}: {err}") from err


def ask_or_skip(entry: Entry, question: str, choosing: str) -> Any:
    """:func:`ask`, for automatic choices, which try every registered class: a broken one answers ``None``.

    One plugin's broken target must not break ``Fabric()`` for everyone, so it is skipped with a
    ``PluginLoadWarning`` (once per entry per process); ``FABRIC_STRICT_PLUGINS=1`` raises ``PluginError``
    (:func:`fabric_core.plugins.manager.skip_broken_entry`).
    """
    if entry.skipped is not None:
        return None
    try:
        return ask(entry, question)
    except Exception as err:
        from fabric_core.plugins.manager import skip_broken_entry

        skip_broken_entry(entry, err, choosing)
        return None


# -- step 2: accelerator and devices -----------------------------------------------------------------


def available_accelerators(registry: Registry, gpu_only: bool = False) -> tuple[list[Entry], list[str]]:
    """The available accelerators, highest priority first, and the names of every GPU kind installed.

    A registered accelerator that fails to load or to answer ``is_available()`` is skipped (see
    :func:`ask_or_skip`).
    """
    available, gpu_kinds = [], []
    for entry in registry:
        is_available = ask_or_skip(entry, "is_available", "choosing the accelerator automatically")
        if entry.skipped is not None:
            continue
        is_gpu = entry.load().is_gpu
        if is_gpu:
            gpu_kinds.append(entry.name)
        if is_available and (is_gpu or not gpu_only):
            available.append(entry)
    available.sort(key=lambda entry: entry.load().priority, reverse=True)
    return available, gpu_kinds


def resolve_accelerator(flag: str | Accelerator, strategy: str | Strategy, registries: Any) -> Accelerator:
    """``auto`` is the available accelerator of highest priority; ``gpu`` the best available GPU kind."""
    if isinstance(flag, Accelerator):
        return flag
    if isinstance(strategy, Strategy) and strategy.accelerator is not None and flag == "auto":
        return strategy.accelerator
    if flag in ("auto", "gpu"):
        available, gpu_kinds = available_accelerators(registries.accelerators, gpu_only=flag == "gpu")
        if not available:
            installed = (
                f"installed GPU accelerators: {', '.join(gpu_kinds)}, none available"
                if gpu_kinds
                else "no GPU accelerator plugin is installed"
            )
            raise ValueError(
                f"Fabric(accelerator='gpu') found no GPU ({installed}). For NVIDIA GPUs: "
                'pip install "fabric-core[cuda]"; or use accelerator="cpu" or "auto".'
            )
        return available[0].create()
    entry = registries.accelerators.get(flag)
    if not ask(entry, "is_available"):
        raise ValueError(
            f"Fabric(accelerator={flag!r}): {entry.load().__name__} is not available on this machine. Use "
            "accelerator='auto' to pick what is available, or run where this device exists."
        )
    return entry.create()


def resolve_devices(accelerator: Accelerator, devices: Any, num_nodes: int) -> list[torch.device]:
    """The devices of this node, parsed by the accelerator (``auto`` asks it how many it has)."""
    if devices == "auto" or (isinstance(devices, str) and devices.strip() == "auto"):
        devices = accelerator.auto_device_count()
    parsed = accelerator.parse_devices(devices)
    parallel = accelerator.get_parallel_devices(parsed)
    if not parallel:
        raise ValueError(f"Fabric(devices={devices!r}) selects no device on {type(accelerator).__name__}.")
    return parallel


# -- step 3: cluster environment ---------------------------------------------------------------------


def resolve_environment(given: ClusterEnvironment | None, registries: Any) -> ClusterEnvironment:
    """The given environment, else the first registered one whose detection holds, else the local one."""
    if given is not None:
        return given
    registry = registries.cluster_environments
    for entry in registry:
        if entry.name != "local" and ask_or_skip(entry, "detect", "detecting the cluster environment"):
            return entry.create()
    return registry.create("local")


# -- step 4: strategy --------------------------------------------------------------------------------


def resolve_strategy(flag: str | Strategy, devices: list[torch.device], num_nodes: int, registries: Any) -> Strategy:
    """``auto``: one process on one device, else DDP (forked from a notebook)."""
    if isinstance(flag, Strategy):
        return flag
    if flag == "auto" and len(devices) == 1 and num_nodes == 1:
        flag = "single_device"
    elif flag == "auto":
        flag = "ddp_fork" if is_interactive() else "ddp"
    return registries.strategies.create(flag)


# -- step 5: precision -------------------------------------------------------------------------------


def normalize_precision(value: Any) -> str:
    """The canonical name of a precision flag, warning for the historical spellings ``16`` and ``"bf16"``."""
    if value in PRECISION_ALIASES and not isinstance(value, bool):
        name = PRECISION_ALIASES[value]
        if str(value) in ("16", "bf16"):
            rank_zero_warn(
                f"precision={value!r} is kept for compatibility; write precision={name!r}, which says the same.",
                stacklevel=7,
            )
        return name
    return str(value)


def resolve_precision(
    flag: Any, plugin: Precision | None, strategy: Strategy, accelerator: Accelerator, registries: Any
) -> Precision:
    """A given instance, else the strategy's specialisation of the name, else the registered precision."""
    given = [p for p in (flag if isinstance(flag, Precision) else None, plugin) if p is not None]
    if strategy._precision is not None:
        given.append(strategy._precision)
    if len({id(p) for p in given}) > 1:
        raise ValueError(
            f"Two precision plugins were given ({', '.join(repr(p) for p in given)}). Pass one, either as "
            "precision=..., in plugins=..., or on the strategy."
        )
    if given:
        if flag is not None and not isinstance(flag, Precision):
            raise ValueError(
                f"Fabric(precision={flag!r}) conflicts with the precision plugin {given[0]!r}. Pass only one of them."
            )
        return given[0]
    name = normalize_precision(flag if flag is not None else "32-true")
    specialised = strategy.precision_for(name)
    if specialised is not None:
        return specialised
    entry = registries.precisions.get(name)
    cls = entry.load()
    extra = {}
    if "device" in _init_parameters(cls) and "device" not in entry.init_kwargs:
        extra["device"] = accelerator.device_type
    return entry.create(**extra)


def _init_parameters(cls: type) -> Sequence[str]:
    try:
        return list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return []


# -- callbacks and loggers ---------------------------------------------------------------------------


def resolve_callbacks(callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def resolve_loggers(loggers: Any, registries: Any) -> list[Logger]:
    """Loggers, or names registered by a plugin (``"csv"``, ``"tensorboard"``).

    A logger is duck-typed, as in Lightning: any object with a ``log_metrics`` method works (a
    :class:`Logger` subclass, Lightning's own loggers, a small class of yours); the other methods
    are called where they exist.
    """
    if loggers is None:
        return []
    items = list(loggers) if isinstance(loggers, (list, tuple)) else [loggers]
    resolved = []
    for item in items:
        if isinstance(item, str):
            item = registries.loggers.create(item)
        if not isinstance(item, Logger) and not callable(getattr(item, "log_metrics", None)):
            raise TypeError(
                f"Fabric(loggers=...) got {item!r} ({type(item).__name__}): expected a logger (an object with a "
                "log_metrics(metrics, step) method, e.g. a fabric_core.loggers.Logger) or a logger name such as "
                "'csv' or 'tensorboard'."
            )
        resolved.append(item)
    return resolved


# -- the pipeline ------------------------------------------------------------------------------------


def resolve(
    accelerator: Any,
    strategy: Any,
    devices: Any,
    num_nodes: Any,
    precision: Any,
    plugins: Any,
    callbacks: Any,
    loggers: Any,
) -> Resolved:
    """Resolve the ``Fabric(...)`` flags into connected objects."""
    from fabric_core.plugins.manager import get_registries

    flags = {
        "accelerator": accelerator,
        "strategy": strategy,
        "devices": devices,
        "num_nodes": num_nodes,
        "precision": precision,
    }
    validate_flags(flags)
    flags = apply_cli_values(flags)
    precision_plugin, environment_plugin, checkpoint_io = split_plugins(plugins)
    registries = get_registries()

    accelerator_obj = resolve_accelerator(flags["accelerator"], flags["strategy"], registries)
    parallel_devices = resolve_devices(accelerator_obj, flags["devices"], flags["num_nodes"])
    environment = resolve_environment(environment_plugin, registries)
    environment.validate_settings(num_devices=len(parallel_devices), num_nodes=flags["num_nodes"])
    strategy_obj = resolve_strategy(flags["strategy"], parallel_devices, flags["num_nodes"], registries)
    precision_obj = resolve_precision(flags["precision"], precision_plugin, strategy_obj, accelerator_obj, registries)
    accelerator_obj.validate_precision(precision_obj, parallel_devices)
    strategy_obj.connect(
        accelerator=accelerator_obj,
        precision=precision_obj,
        checkpoint_io=checkpoint_io,
        parallel_devices=parallel_devices,
        cluster_environment=environment,
        num_nodes=flags["num_nodes"],
    )
    strategy_obj.configure_launcher()
    launcher = strategy_obj.launcher
    if launcher is not None and not launcher.is_interactive_compatible and is_interactive():
        raise RuntimeError(
            f"{type(strategy_obj).__name__} with {type(launcher).__name__} cannot start processes from a notebook or "
            "an interactive session. Use strategy='ddp_notebook' (or 'ddp_fork'), or run your code as a script."
        )
    return Resolved(
        accelerator=accelerator_obj,
        strategy=strategy_obj,
        precision=strategy_obj.precision,
        cluster_environment=getattr(strategy_obj, "cluster_environment", None),
        callbacks=resolve_callbacks(callbacks),
        loggers=resolve_loggers(loggers, registries),
    )
