"""One registry per kind of plugin: names to lazily imported targets, with the rule for contested names.

The rule, applied whatever order plugins load in: a single registration with ``override=True`` wins;
otherwise fabric-core's own registration wins (a plugin cannot take or disable a core name by
accident: it is reported as shadowed); otherwise a single registration; otherwise the name is a
conflict, unusable until one side goes, and using it raises an error naming every registrant.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from fabric_core.plugins._hooks import CORE_DISTRIBUTION, HOOKS

#: Names provided by first-party packages, so an unknown name can say what to install.
FIRST_PARTY: dict[str, dict[str, str]] = {
    "accelerators": {"cuda": "cuda", "tpu": "xla", "xla": "xla"},
    "strategies": {
        "dp": "cuda",
        "fsdp": "fsdp",
        "fsdp_cpu_offload": "fsdp",
        "model_parallel": "fsdp",
        "deepspeed": "deepspeed",
        "deepspeed_stage_1": "deepspeed",
        "deepspeed_stage_2": "deepspeed",
        "deepspeed_stage_2_offload": "deepspeed",
        "deepspeed_stage_3": "deepspeed",
        "deepspeed_stage_3_offload": "deepspeed",
        "deepspeed_stage_3_offload_nvme": "deepspeed",
        "xla": "xla",
        "xla_fsdp": "xla",
        "single_xla": "xla",
    },
    "precisions": {"transformer-engine": "te", "transformer-engine-float16": "te"},
    "cluster_environments": {"xla": "xla"},
    "loggers": {"csv": "loggers", "tensorboard": "loggers"},
    "consolidators": {"fsdp": "fsdp", "deepspeed": "deepspeed"},
}

#: A readable singular for each kind, used in messages.
KIND_LABELS = {
    "accelerators": "accelerator",
    "strategies": "strategy",
    "precisions": "precision",
    "cluster_environments": "cluster environment",
    "loggers": "logger",
    "commands": "command",
    "consolidators": "checkpoint format",
}


#: The base class each kind's targets must subclass (commands: any callable), imported only to check one.
BASES = {
    "accelerators": "fabric_core.accelerators.accelerator:Accelerator",
    "strategies": "fabric_core.strategies.strategy:Strategy",
    "precisions": "fabric_core.precision.precision:Precision",
    "cluster_environments": "fabric_core.environments.cluster_environment:ClusterEnvironment",
    "loggers": "fabric_core.loggers.logger:Logger",
    "consolidators": "fabric_core.io.consolidate:CheckpointConsolidator",
}

#: kind -> the hook that fills it
HOOK_OF_KIND = {kind: hook for hook, kind in HOOKS.items()}


def load_target(target: Any) -> Any:
    """Import a ``"package.module:attribute"`` string; return any other target as it is."""
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attribute.split(".") if attribute else []:
        obj = getattr(obj, part)
    return obj


def check_registration(label: str, name: Any, target: Any) -> None:
    """Raise if ``name`` is not a non-empty string or a string ``target`` lacks its ``:attribute``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"A {label} name must be a non-empty string, got {name!r}.")
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"{label} '{name}': target {target!r} must be 'package.module:attribute'.")


def _qualname(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def check_target(kind: str, target: Any, who: str) -> None:
    """Raise ``TypeError`` unless ``target`` (already imported) is what a ``kind`` name must point to.

    Accelerators, strategies, precisions, cluster environments, loggers and checkpoint consolidators
    are classes, subclasses of their kind's base: resolution reads class attributes (``priority``,
    ``is_available()``, ``detect()``, the constructor's parameters) before it constructs anything, so
    factory functions are refused; register variants with ``init_kwargs`` instead. A command is any
    callable.
    ``who`` says which registration it is, e.g. ``"precision 'fp8' of plugin 'fp8' (fabric-fp8 1.0)"``.
    """
    if kind == "commands":
        if not callable(target):
            raise TypeError(
                f"{who} is {target!r} ({type(target).__name__}), which is not callable: a command is a function "
                "taking the list of arguments and returning an exit status, e.g. `def main(args): ...`."
            )
        return
    if kind not in BASES:
        return
    base = load_target(BASES[kind])
    if isinstance(target, type) and issubclass(target, base):
        return
    what = f"the class {_qualname(target)}" if isinstance(target, type) else f"{target!r} ({type(target).__name__})"
    message = (
        f"{who} is {what}, not a subclass of {_qualname(base)}: register a {base.__name__} subclass in "
        f"{HOOK_OF_KIND[kind]} (a class, not a factory function; variants are keyword arguments of register())."
    )
    if isinstance(target, type):
        for other_kind, other_base in BASES.items():
            if other_kind != kind and issubclass(target, load_target(other_base)):
                message += f" It is a {load_target(other_base).__name__}: register it in {HOOK_OF_KIND[other_kind]}."
    raise TypeError(message)


def _warn(message: str) -> None:
    from fabric_core.plugins.manager import PluginLoadWarning  # the manager imports this module

    warnings.warn(message, PluginLoadWarning, stacklevel=4)


class Entry:
    """A registered name: what it points to, how to construct it and who registered it."""

    __slots__ = (
        "_loaded",
        "description",
        "distribution",
        "init_kwargs",
        "kind",
        "name",
        "override",
        "plugin",
        "skipped",
        "target",
        "version",
    )

    def __init__(
        self,
        name: str,
        target: Any,
        description: str = "",
        init_kwargs: dict[str, Any] | None = None,
        distribution: str = "unknown",
        version: str = "",
        plugin: str = "",
        override: bool = False,
        kind: str = "",
    ) -> None:
        self.name = name
        self.target = target
        self.description = description
        self.init_kwargs: dict[str, Any] = {} if init_kwargs is None else init_kwargs
        self.distribution = distribution
        self.version = version
        self.plugin = plugin
        self.override = override
        self.kind = kind
        #: Why automatic choices (``accelerator="auto"``, environment detection) skip this entry, once it broke.
        self.skipped: str | None = None
        self._loaded: Any = None

    def _key(self) -> tuple[Any, ...]:
        return (
            self.name,
            self.target,
            self.description,
            self.init_kwargs,
            self.distribution,
            self.version,
            self.plugin,
            self.override,
            self.kind,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return (
            f"Entry(name={self.name!r}, target={self.target!r}, description={self.description!r}, "
            f"init_kwargs={self.init_kwargs!r}, distribution={self.distribution!r}, version={self.version!r}, "
            f"plugin={self.plugin!r}, override={self.override!r}, kind={self.kind!r})"
        )

    def load(self) -> Any:
        """The target itself, imported on first use and checked against its kind.

        Raises ``ImportError`` when a lazy target fails to import and ``TypeError`` when it is not what
        its kind needs (see :func:`check_target`), each naming the name, the plugin and its distribution.
        """
        if self._loaded is None:
            try:
                target = load_target(self.target)
            except Exception as err:
                raise ImportError(
                    f"{self.who} points to {self.target!r}, which failed to import: {type(err).__name__}: {err}"
                ) from err
            check_target(self.kind, target, self.who)
            self._loaded = target
        return self._loaded

    def create(self, **extra: Any) -> Any:
        """Construct the target with the registered keyword arguments (``extra`` fills the rest)."""
        return self.load()(**{**extra, **self.init_kwargs})

    @property
    def source(self) -> str:
        """The distribution and version that registered this name, e.g. ``"fabric-fastnet 1.0"``."""
        return f"{self.distribution} {self.version}".strip()

    @property
    def who(self) -> str:
        """This registration in words: ``"strategy 'fastnet' of plugin 'fastnet' (fabric-fastnet 1.0)"``."""
        label = KIND_LABELS.get(self.kind, "name") if self.kind else "name"
        plugin = f" of plugin '{self.plugin}'" if self.plugin else ""
        return f"{label} '{self.name}'{plugin} ({self.source})"

    @property
    def is_core(self) -> bool:
        return self.distribution == CORE_DISTRIBUTION


class Registry:
    """Names of one kind (accelerators, strategies, ...) and what they resolve to.

    Plugins add to it in their hooks::

        registry.register("ddp_spawn", "fabric_core.strategies.ddp:DDPStrategy",
                          description="DDP, processes started with spawn", start_method="spawn")

    A name registered by several distributions is decided by the rule in this module's docstring.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._conflicts: dict[str, list[Entry]] = {}
        self._shadowed: dict[str, list[Entry]] = {}  # plain registrations of a core name, which core kept
        self._candidates: dict[str, list[Entry]] = {}  # every registration of each name
        self._failures: dict[str, tuple[str, str, str]] = {}  # distribution -> (plugin, version, error)
        self._disabled: dict[str, tuple[str, str]] = {}  # distribution -> (plugin, the setting that disabled it)

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    def register(
        self,
        name: str,
        target: type | Callable | str,
        /,
        *,
        description: str = "",
        override: bool = False,
        **init_kwargs: Any,
    ) -> None:
        """Register ``name`` for ``target``: a class of this kind (a callable for commands) or a lazy string.

        A string ``"package.module:Attribute"`` is imported when the name is first used, and checked then;
        a class is checked now. ``TypeError`` when the target is not of this kind, ``ValueError`` when this
        registry already holds ``name`` from the same source.
        """
        entry = Entry(
            name=name,
            target=target,
            description=description,
            init_kwargs=init_kwargs,
            override=override,
            kind=self.kind,
        )
        _check_new(entry, [e for e in self._candidates.get(name, []) if _same_source(e, entry)])
        self._add(entry)

    def _add(self, entry: Entry) -> None:
        # Both ways in (register() and a plugin's ScopedRegistry) have checked the entry with _check_new.
        candidates = self._candidates.setdefault(entry.name, [])
        candidates.append(entry)
        core = [e for e in candidates if e.is_core]
        # A plain registration meeting a core one, in either load order, is reported once, when they meet.
        if entry.is_core:
            newly_shadowed = [e for e in candidates if not e.is_core and not e.override]
        else:
            newly_shadowed = [entry] if core and not entry.override else []
        for plain in newly_shadowed:
            _warn(
                f"fabric plugin '{plain.plugin}' from {plain.source} registers {self.label} '{plain.name}', a name "
                f"{CORE_DISTRIBUTION} provides: {CORE_DISTRIBUTION}'s '{plain.name}' is kept. To replace it, "
                "register it with override=True; otherwise choose another name."
            )
        # Decided from all registrations so far, so the load order never matters.
        contenders = [e for e in candidates if e.override] or core or candidates
        self._shadowed.pop(entry.name, None)
        if len(contenders) == 1:
            self._entries[entry.name] = contenders[0]
            self._conflicts.pop(entry.name, None)
            if contenders is core and len(candidates) > 1:
                self._shadowed[entry.name] = [e for e in candidates if not e.is_core]
        else:
            self._entries.pop(entry.name, None)
            self._conflicts[entry.name] = contenders

    def record_failure(self, distribution: str, error: str, *, plugin: str = "", version: str = "") -> None:
        """Note that ``distribution`` was not loaded (it failed, or is incompatible), for "unknown name" errors."""
        self._failures[distribution] = (plugin, version, error)

    def record_disabled(self, distribution: str, setting: str, *, plugin: str = "") -> None:
        """Note that ``distribution`` was disabled by ``setting``, for "unknown name" errors."""
        self._disabled[distribution] = (plugin, setting)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._conflicts

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The names that resolve (conflicting names excluded), sorted."""
        return sorted(self._entries)

    def registrations(self) -> Iterator[Entry]:
        """Every registration, including those that lost to another one or conflict (for ``fabric plugins``)."""
        for entries in self._candidates.values():
            yield from entries

    @property
    def conflicts(self) -> dict[str, list[Entry]]:
        """Names that cannot be used, with the registrations contesting each."""
        return dict(self._conflicts)

    @property
    def shadowed(self) -> dict[str, list[Entry]]:
        """Core names that other plugins registered without ``override=True``, with those registrations."""
        return dict(self._shadowed)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; raises ``ValueError`` saying what is available or what to install."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        raise self._lookup_error(name)

    def load(self, name: str) -> Any:
        return self.get(name).load()

    def create(self, name: str, **extra: Any) -> Any:
        return self.get(name).create(**extra)

    def _lookup_error(self, name: str) -> ValueError:
        if name in self._conflicts:
            contenders = self._conflicts[name]
            sources = " and ".join(f"{e.source} (plugin '{e.plugin}')" for e in contenders)
            fix = (
                "Both use override=True: uninstall one of them."
                if all(e.override for e in contenders)
                else "Uninstall one of them, or have the one that should win register it with override=True."
            )
            return ValueError(f"{self.label} '{name}' is registered by both {sources}. {fix}")
        extra = FIRST_PARTY.get(self.kind, {}).get(name)
        if extra is not None:
            distribution = f"fabric-{extra}"
            if distribution in self._disabled:
                return ValueError(
                    f"{self.label} '{name}' is provided by {distribution}, which is installed but disabled by "
                    f"{self._disabled[distribution][1]}: take '{extra}' (or '{distribution}') out of that variable "
                    "to use it."
                )
            if distribution in self._failures:
                return ValueError(
                    f"{self.label} '{name}' is provided by {distribution}, which is installed but failed to load: "
                    f"{self._failures[distribution][2]}"
                )
            return ValueError(
                f"{self.label} '{name}' is provided by {distribution}: pip install \"fabric-core[{extra}]\""
            )
        available = ", ".join(repr(n) for n in self.names()) or "none"
        message = f"Unknown {self.label} {name!r}. Available: {available}."
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        if close:
            message += f" Did you mean {close[0]!r}?"
        return ValueError(message + "".join(self._notes()))

    def _notes(self) -> list[str]:
        """A note for each plugin that was not loaded: it may be the one providing the unknown name."""
        from fabric_core.plugins.manager import DISABLE_ENV

        notes = []
        for distribution, (plugin, version, error) in self._failures.items():
            who = _plugin_words(plugin, distribution, version)
            notes.append(
                f" Note: {who} was not loaded: {error}; its names are missing. Fix or reinstall it, or set "
                f"{DISABLE_ENV}={plugin or distribution} to stop loading it."
            )
        for distribution, (plugin, setting) in self._disabled.items():
            who = _plugin_words(plugin, distribution, "")
            notes.append(f" Note: {who} is disabled by {setting}; its names are missing.")
        return notes


def _plugin_words(plugin: str, distribution: str, version: str) -> str:
    source = f"{distribution} {version}".strip()
    return f"plugin '{plugin}' ({source})" if plugin else source


def _same_source(a: Entry, b: Entry) -> bool:
    return (a.distribution, a.version, a.plugin) == (b.distribution, b.version, b.plugin)


def _check_new(entry: Entry, earlier_from_same_source: list[Entry]) -> None:
    """Raise for a registration that cannot be right: a malformed name or target, a duplicate, the wrong kind."""
    label = KIND_LABELS.get(entry.kind, entry.kind)
    check_registration(label, entry.name, entry.target)
    if earlier_from_same_source:
        raise ValueError(
            f"{entry.who} is registered twice by the same plugin: register each name once (a variant of a class "
            "gets a name of its own, with its keyword arguments)."
        )
    if not isinstance(entry.target, str):
        check_target(entry.kind, entry.target, entry.who)


class ScopedRegistry:
    """What a plugin's hook receives: registers into a registry on behalf of one distribution.

    Registrations are kept aside until the hook returns, so a hook that raises halfway adds nothing.
    """

    def __init__(self, registry: Registry, distribution: str, version: str, plugin: str) -> None:
        self._registry = registry
        self._distribution = distribution
        self._version = version
        self._plugin = plugin
        self.pending: list[Entry] = []

    @property
    def kind(self) -> str:
        return self._registry.kind

    def register(
        self,
        name: str,
        target: type | Callable | str,
        /,
        *,
        description: str = "",
        override: bool = False,
        **init_kwargs: Any,
    ) -> None:
        """Register ``name`` for ``target``; see :meth:`Registry.register`."""
        entry = Entry(
            name=name,
            target=target,
            description=description,
            init_kwargs=init_kwargs,
            distribution=self._distribution,
            version=self._version,
            plugin=self._plugin,
            override=override,
            kind=self.kind,
        )
        # Checked here, inside the plugin's hook, so that a bad registration is that plugin's failure.
        _check_new(entry, [e for e in self.pending if e.name == name])
        self.pending.append(entry)

    def commit(self) -> list[str]:
        for entry in self.pending:
            self._registry._add(entry)
        return [entry.name for entry in self.pending]

    def __contains__(self, name: object) -> bool:
        return name in self._registry
