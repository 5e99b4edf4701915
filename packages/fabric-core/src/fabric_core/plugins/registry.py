"""One registry per kind of plugin: names to lazily imported targets, with collision tracking."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

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
    "commands": {"consolidate": "fsdp"},
}

#: A readable singular for each kind, used in messages.
KIND_LABELS = {
    "accelerators": "accelerator",
    "strategies": "strategy",
    "precisions": "precision",
    "cluster_environments": "cluster environment",
    "loggers": "logger",
    "commands": "command",
}


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


class Entry:
    """A registered name: what it points to, how to construct it and who registered it."""

    __slots__ = (
        "_loaded",
        "description",
        "distribution",
        "init_kwargs",
        "name",
        "override",
        "plugin",
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
    ) -> None:
        self.name = name
        self.target = target
        self.description = description
        self.init_kwargs: dict[str, Any] = {} if init_kwargs is None else init_kwargs
        self.distribution = distribution
        self.version = version
        self.plugin = plugin
        self.override = override
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
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return (
            f"Entry(name={self.name!r}, target={self.target!r}, description={self.description!r}, "
            f"init_kwargs={self.init_kwargs!r}, distribution={self.distribution!r}, version={self.version!r}, "
            f"plugin={self.plugin!r}, override={self.override!r})"
        )

    def load(self) -> Any:
        """The target itself, importing it on first use."""
        if self._loaded is None:
            try:
                self._loaded = load_target(self.target)
            except Exception as err:
                raise ImportError(
                    f"'{self.name}' registered by {self.source} points to {self.target!r}, which failed to import: "
                    f"{type(err).__name__}: {err}"
                ) from err
        return self._loaded

    def create(self, **extra: Any) -> Any:
        """Construct the target with the registered keyword arguments (``extra`` fills the rest)."""
        return self.load()(**{**extra, **self.init_kwargs})

    @property
    def source(self) -> str:
        return f"{self.distribution} {self.version}".strip()


class Registry:
    """Names of one kind (accelerators, strategies, ...) and what they resolve to.

    Plugins add to it in their hooks::

        registry.register("ddp_spawn", "fabric_core.strategies.ddp:DDPStrategy",
                          description="DDP, processes started with spawn", start_method="spawn")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._conflicts: dict[str, list[Entry]] = {}
        self._candidates: dict[str, list[Entry]] = {}  # every registration of each name
        self._failures: dict[str, str] = {}  # distribution -> error, for first-party hints
        self._disabled: dict[str, str] = {}  # distribution -> the setting that disabled it

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
        """Register ``name`` for ``target`` (a class, a callable or a lazy ``"module:attr"`` string)."""
        self._add(Entry(name=name, target=target, description=description, init_kwargs=init_kwargs, override=override))

    def _add(self, entry: Entry) -> None:
        check_registration(self.label, entry.name, entry.target)
        candidates = self._candidates.setdefault(entry.name, [])
        candidates.append(entry)
        # Decided from all registrations so far, so the load order never matters: a single override
        # wins; otherwise a single registration; otherwise the contenders conflict.
        contenders = [e for e in candidates if e.override] or candidates
        if len(contenders) == 1:
            self._entries[entry.name] = contenders[0]
            self._conflicts.pop(entry.name, None)
        else:
            self._entries.pop(entry.name, None)
            self._conflicts[entry.name] = contenders

    def record_failure(self, distribution: str, error: str) -> None:
        self._failures[distribution] = error

    def record_disabled(self, distribution: str, setting: str) -> None:
        self._disabled[distribution] = setting

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._conflicts

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The names that resolve (conflicting names excluded), sorted."""
        return sorted(self._entries)

    @property
    def conflicts(self) -> dict[str, list[Entry]]:
        return dict(self._conflicts)

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
            sources = " and ".join(f"{e.source} (plugin '{e.plugin}')" for e in self._conflicts[name])
            return ValueError(
                f"{self.label} '{name}' is registered by both {sources}. Uninstall one of them, or have the one "
                f"that should win register it with override=True."
            )
        extra = FIRST_PARTY.get(self.kind, {}).get(name)
        if extra is not None:
            distribution = f"fabric-{extra}"
            setting = self._disabled.get(distribution)
            if setting is not None:
                return ValueError(
                    f"{self.label} '{name}' is provided by {distribution}, which is installed but disabled by "
                    f"{setting}: take '{extra}' (or '{distribution}') out of that variable to use it."
                )
            failure = self._failures.get(distribution)
            if failure is not None:
                return ValueError(
                    f"{self.label} '{name}' is provided by {distribution}, which is installed but failed to load: "
                    f"{failure}"
                )
            return ValueError(
                f"{self.label} '{name}' is provided by {distribution}: pip install \"fabric-core[{extra}]\""
            )
        available = ", ".join(repr(n) for n in self.names()) or "none"
        message = f"Unknown {self.label} {name!r}. Available: {available}."
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        if close:
            message += f" Did you mean {close[0]!r}?"
        return ValueError(message)


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
        # Checked here, inside the plugin's hook, so that a bad registration is that plugin's failure.
        check_registration(self._registry.label, name, target)
        self.pending.append(
            Entry(
                name=name,
                target=target,
                description=description,
                init_kwargs=init_kwargs,
                distribution=self._distribution,
                version=self._version,
                plugin=self._plugin,
                override=override,
            )
        )

    def commit(self) -> list[str]:
        for entry in self.pending:
            self._registry._add(entry)
        return [entry.name for entry in self.pending]

    def __contains__(self, name: object) -> bool:
        return name in self._registry
