"""Discovering plugins, once per process, on first use.

Discovery runs on ``importlib.metadata.entry_points(group="fabric")`` and a pluggy ``PluginManager``
holding :mod:`fabric_core.plugins.hookspecs`, so plugins get pluggy's semantics: ``tryfirst`` and
``trylast`` ordering, ``optionalhook``, ``specname``, implementations checked against the
specifications, entry points naming a module or any object (``pkg.mod:plugin``).

What pluggy does not give is isolation. A plugin that is incompatible with the running fabric-core,
fails to import or to validate, or whose hook raises is skipped whole, with a warning, and the others
keep working. So each plugin is checked, imported and registered on its own, and the hooks are not
called through ``pm.hook``: their implementations are called one by one, in the order pluggy calls
them, each with a registry that holds the plugin's names back until every hook of that plugin has
returned.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from types import FunctionType, MethodType, ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from fabric_core.plugins._hooks import CORE_DISTRIBUTION, HOOKS, KINDS, PROJECT
from fabric_core.plugins.registry import Registry, ScopedRegistry

if TYPE_CHECKING:
    from importlib.metadata import Distribution, EntryPoint

    from fabric_core.plugins.registry import Entry

ENTRY_POINT_GROUP = PROJECT
STRICT_ENV = "FABRIC_STRICT_PLUGINS"
DISABLE_ENV = "FABRIC_DISABLE_PLUGINS"
CORE_MODULE = "fabric_core.plugins.builtin"


class PluginError(RuntimeError):
    """A plugin was incompatible, failed to load or its hook raised, and ``FABRIC_STRICT_PLUGINS=1`` asked to stop."""


class PluginLoadWarning(UserWarning):
    """A plugin was incompatible, failed to load or its hook raised; it was skipped."""


class PluginInfo:
    """What ``fabric plugins`` reports about one plugin.

    ``incompatible`` is set when the plugin's fabric-core range excludes the running fabric-core (it
    was not imported; ``errors`` says why and how to fix it).
    """

    __slots__ = ("disabled", "distribution", "errors", "incompatible", "module", "name", "registered", "version")

    def __init__(
        self,
        name: str,
        distribution: str,
        version: str,
        module: str,
        registered: dict[str, list[str]] | None = None,
        errors: list[str] | None = None,
        disabled: bool = False,
        incompatible: bool = False,
    ) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.module = module
        self.registered: dict[str, list[str]] = {} if registered is None else registered
        self.errors: list[str] = [] if errors is None else errors
        self.disabled = disabled
        self.incompatible = incompatible

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "registered": self.registered,
            "errors": self.errors,
            "disabled": self.disabled,
            "incompatible": self.incompatible,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PluginInfo) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.as_dict().items())
        return f"PluginInfo({fields})"


class Registries:
    """Every registry, filled by every plugin's hooks."""

    __slots__ = (
        "accelerators",
        "cluster_environments",
        "commands",
        "consolidators",
        "loggers",
        "plugins",
        "precisions",
        "strategies",
    )

    def __init__(
        self,
        accelerators: Registry,
        strategies: Registry,
        precisions: Registry,
        cluster_environments: Registry,
        loggers: Registry,
        commands: Registry,
        plugins: list[PluginInfo],
        consolidators: Registry | None = None,
    ) -> None:
        self.accelerators = accelerators
        self.strategies = strategies
        self.precisions = precisions
        self.cluster_environments = cluster_environments
        self.loggers = loggers
        self.commands = commands
        self.plugins = plugins
        # Last and optional: Registries(...) built with the earlier keywords (tests, tools) keeps working.
        self.consolidators = Registry("consolidators") if consolidators is None else consolidators

    def __getitem__(self, kind: str) -> Registry:
        if kind not in KINDS:
            raise KeyError(f"No registry of kind {kind!r}; kinds: {', '.join(KINDS)}.")
        return getattr(self, kind)

    def __repr__(self) -> str:
        counts = ", ".join(f"{kind}={len(getattr(self, kind))}" for kind in KINDS)
        return f"Registries({counts}, plugins={len(self.plugins)})"


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _disabled() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class _Source:
    """One ``fabric`` entry point, with what discovery needs from its distribution's metadata."""

    # A plain class: a NamedTuple costs a third of a millisecond to define, at the first Fabric(...).
    __slots__ = ("distribution", "entry_point", "name", "requires", "value", "version")

    def __init__(
        self,
        name: str,
        value: str,
        distribution: str,
        version: str,
        requires: list[str],
        entry_point: EntryPoint | None,
    ) -> None:
        self.name = name
        self.value = value
        self.distribution = distribution
        self.version = version
        self.requires = requires  # the distribution's Requires-Dist; empty for fabric-core, never checked
        self.entry_point = entry_point  # None for the built-ins of a source tree that was never installed

    @property
    def is_core(self) -> bool:
        return self.value == CORE_MODULE

    def load(self) -> Any:
        """The module or object the entry point names (``pkg.mod`` or ``pkg.mod:plugin``)."""
        if self.entry_point is None:
            return importlib.import_module(self.value)
        return self.entry_point.load()


def _metadata(dist: Distribution) -> tuple[str, str, list[str]]:
    """A distribution's name, version and requirements, from one read of its metadata file.

    Only these three headers are needed, and they are never folded over several lines; reading them
    directly costs a tenth of ``dist.metadata``, which parses the whole file (the README included)
    with the email package.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text is None:  # a distribution from a custom finder, without either file
        meta = dist.metadata
        return meta["Name"] or "unknown", meta["Version"] or "", list(dist.requires or [])
    headers: dict[str, list[str]] = {"Name": [], "Version": [], "Requires-Dist": []}
    for line in text.splitlines():
        if not line:
            break  # the headers end at the first empty line
        key, _, value = line.partition(":")
        if key in headers:
            headers[key].append(value.strip())
    name, version = (headers["Name"] or ["unknown"])[0], (headers["Version"] or [""])[0]
    # An egg lists its requirements in requires.txt instead, which Distribution.requires reads.
    return name, version, headers["Requires-Dist"] or list(dist.requires or [])


def _entry_points() -> list[_Source]:
    """Every ``fabric`` entry point: fabric-core's first, then by distribution and entry-point name.

    ``importlib.metadata`` yields one distribution per normalised name (the first found on
    ``sys.path``), so a distribution reachable twice is one plugin. Each distribution's metadata is
    read once, and fabric-core's not at all.
    """
    from importlib.metadata import entry_points

    from fabric_core.__about__ import __version__
    from fabric_core.plugins.compatibility import normalize

    metadata: dict[int, tuple[str, str, list[str]]] = {}
    sources = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        if ep.value == CORE_MODULE:
            sources.append(_Source(ep.name, ep.value, CORE_DISTRIBUTION, __version__, [], ep))
        elif dist is None:
            sources.append(_Source(ep.name, ep.value, "unknown", "", [], ep))
        else:
            if id(dist) not in metadata:  # one Distribution object serves all its entry points
                metadata[id(dist)] = _metadata(dist)
            sources.append(_Source(ep.name, ep.value, *metadata[id(dist)], ep))
    sources.sort(key=lambda s: (not s.is_core, normalize(s.distribution), s.name))
    if not any(source.is_core for source in sources):
        # Running from a source tree that was never installed: the built-ins must still be there.
        sources.insert(0, _Source("core", CORE_MODULE, CORE_DISTRIBUTION, __version__, [], None))
    return sources


def _skip(info: PluginInfo, registries: dict[str, Registry], error: str, cause: BaseException | None = None) -> None:
    """Leave ``info``'s plugin out: warn, or raise :class:`PluginError` under ``FABRIC_STRICT_PLUGINS=1``."""
    info.errors.append(error)
    for registry in registries.values():
        # So that asking for one of its names says why it is missing.
        registry.record_failure(info.distribution, error, plugin=info.name, version=info.version)
    where = f"fabric plugin '{info.name}' from {info.distribution} {info.version}".rstrip()
    if _strict():
        raise PluginError(
            f"{where}: {error}. {STRICT_ENV}=1 makes this an error: fix or uninstall the plugin, or set "
            f"{DISABLE_ENV}={info.name} to skip it."
        ) from cause
    text = (
        f"Skipping {where}: {error}. The other plugins keep working; set {DISABLE_ENV}={info.name} to stop "
        f"loading it, or {STRICT_ENV}=1 to make this an error."
    )
    warnings.warn(text, PluginLoadWarning, stacklevel=4)


def skip_broken_entry(entry: Entry, err: Exception, choosing: str) -> None:
    """Leave ``entry`` out of an automatic choice because its target failed with ``err``.

    One plugin's broken target must not break an automatic choice for everyone (``accelerator="auto"``,
    detecting the cluster environment, the format ``fabric consolidate`` recognizes), so it is marked
    ``skipped`` with a ``PluginLoadWarning``; under ``FABRIC_STRICT_PLUGINS=1`` this raises ``PluginError``.
    ``err``'s message names the registration (``entry.who``); ``choosing`` says what was being chosen.
    """
    disable = f"{DISABLE_ENV}={entry.plugin or entry.distribution}"
    if _strict():
        raise PluginError(
            f"{str(err).rstrip('.')}, while {choosing}. {STRICT_ENV}=1 makes this an error: fix or uninstall "
            f"{entry.distribution}, or set {disable} to skip it."
        ) from err
    entry.skipped = f"{type(err).__name__}: {err}"
    warnings.warn(
        f"{str(err).rstrip('.')}. Skipped while {choosing}: the other {entry.kind.replace('_', ' ')} keep working; "
        f"set {disable} to stop loading that plugin, or {STRICT_ENV}=1 to make this an error.",
        PluginLoadWarning,
        stacklevel=3,
    )


def _failed(what: str, err: BaseException) -> str:
    # pluggy's validation messages span lines; a warning reads better on one.
    return f"{what}: {type(err).__name__}: " + " ".join(str(err).split())


def _incompatibility(source: _Source) -> str | None:
    """Why ``source`` cannot run on this fabric-core, with the commands that fix it; ``None`` if it can."""
    from fabric_core.__about__ import __version__
    from fabric_core.plugins.compatibility import allows, core_specifier

    specifier = core_specifier(source.requires)
    if not specifier or allows(specifier, __version__):
        return None
    return (
        f"incompatible: {source.distribution} {source.version} requires {CORE_DISTRIBUTION}{specifier}, but "
        f"{CORE_DISTRIBUTION} {__version__} is installed. Install a {CORE_DISTRIBUTION} it supports "
        f'(pip install "{CORE_DISTRIBUTION}{specifier}") or a {source.distribution} release built for '
        f"{CORE_DISTRIBUTION} {__version__} (pip install --upgrade {source.distribution})"
    )


def _load(
    sources: list[_Source], registries: dict[str, Registry]
) -> tuple[list[PluginInfo], list[tuple[PluginInfo, Any]]]:
    """Import the plugins that are neither disabled nor incompatible: (every plugin's info, the loaded ones)."""
    disabled = _disabled()
    disabled_by = f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV, '')}"
    infos, loaded = [], []
    for source in sources:
        info = PluginInfo(source.name, source.distribution, source.version, source.value)
        infos.append(info)
        if not source.is_core and (source.name in disabled or source.distribution in disabled):
            info.disabled = True
            for registry in registries.values():
                registry.record_disabled(source.distribution, disabled_by, plugin=source.name)
            continue
        try:
            # fabric-core's built-ins are never checked: they are the running fabric-core.
            problem = None if source.is_core else _incompatibility(source)
        except Exception as err:
            _skip(info, registries, _failed(f"reading its {CORE_DISTRIBUTION} requirement", err), err)
            continue
        if problem is not None:
            info.incompatible = True
            _skip(info, registries, problem)
            continue
        try:
            loaded.append((info, source.load()))
        except Exception as err:
            _skip(info, registries, _failed(f"importing {source.value}", err), err)
    return infos, loaded


def _check_hooks(manager: pluggy.PluginManager, plugin: Any) -> None:
    """What pluggy leaves to ``check_pending()`` or allows, checked for one plugin as it registers."""
    for caller in manager.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            where = getattr(impl.function, "__qualname__", caller.name)
            if not caller.has_spec() and not impl.optionalhook:
                raise TypeError(
                    f"{where} is marked @hookimpl for '{caller.name}', but there is no fabric hook of that name. "
                    f"Hooks: {', '.join(HOOKS)} (mark it @hookimpl(optionalhook=True) if it is meant for a "
                    "later fabric-core)."
                )
            if impl.wrapper or impl.hookwrapper:
                raise TypeError(
                    f"{where} is marked as a hook wrapper, but fabric hooks only register names: drop "
                    "wrapper=True / hookwrapper=True and register directly."
                )


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, quicker to pass over the attributes of a plugin module that are not hooks.

    pluggy looks every attribute of a plugin up with ``inspect.getattr_static``: 60% of registering
    the first-party plugins, at the first ``Fabric(...)``. In a module, only a function carrying the
    ``fabric_impl`` mark, or a method object, can be a hook; everything else is passed over here and
    the rest is left to pluggy, so what is found and how it is validated do not change.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        if type(plugin) is ModuleType:
            value = plugin.__dict__.get(name)
            if isinstance(value, FunctionType):
                if self.project_name + "_impl" not in value.__dict__:
                    return None
            elif not isinstance(value, (staticmethod, classmethod, MethodType)):
                return None
        return super().parse_hookimpl_opts(plugin, name)


def _register(loaded: list[tuple[PluginInfo, Any]], registries: dict[str, Registry]) -> pluggy.PluginManager:
    """A PluginManager with the hook specifications and every plugin that validates against them."""
    from fabric_core.plugins import hookspecs

    manager = _PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    # pluggy calls the implementations registered last first; registering in reverse makes the calls
    # run in discovery order (fabric-core's built-ins first), which tryfirst and trylast then adjust.
    for info, plugin in reversed(loaded):
        key = _key(info)
        try:
            if manager.register(plugin, name=key) is None:
                raise TypeError(f"the entry point {info.module!r} names None instead of a module or an object")
            _check_hooks(manager, plugin)
        except Exception as err:
            if manager.get_plugin(key) is not None:
                manager.unregister(name=key)
            _skip(info, registries, _failed(f"registering {info.module}", err), err)
    return manager


def _call_hooks(manager: pluggy.PluginManager, infos: dict[str, PluginInfo], registries: dict[str, Registry]) -> None:
    """Call every implementation in pluggy's order; keep a plugin's names only if all its hooks returned."""
    calls: list[tuple[str, str, ScopedRegistry]] = []
    failed: set[str] = set()
    for hook_name, kind in HOOKS.items():
        for impl in reversed(getattr(manager.hook, hook_name).get_hookimpls()):
            if impl.plugin_name in failed:
                continue
            info = infos[impl.plugin_name]
            arguments = {"registry": ScopedRegistry(registries[kind], info.distribution, info.version, info.name)}
            try:
                # As pluggy calls it: only the arguments the implementation declares, positionally.
                impl.function(*[arguments[name] for name in impl.argnames])
            except Exception as err:
                failed.add(impl.plugin_name)
                _skip(info, registries, _failed(hook_name, err), err)
                continue
            calls.append((kind, impl.plugin_name, arguments["registry"]))
    for kind, key, scoped in calls:
        if key in failed:
            continue
        names = scoped.commit()
        if names:
            infos[key].registered.setdefault(kind, []).extend(names)


def _key(info: PluginInfo) -> str:
    """The plugin's name in the PluginManager: entry-point names are unique only within a distribution."""
    return f"{info.distribution}/{info.name}"


def discover() -> Registries:
    """Find, check, import and register every plugin. Prefer :func:`get_registries`, which caches."""
    registries = {kind: Registry(kind) for kind in KINDS}
    infos, loaded = _load(_entry_points(), registries)
    manager = _register(loaded, registries)
    _call_hooks(manager, {_key(info): info for info, _ in loaded}, registries)
    return Registries(plugins=infos, **registries)


_lock = threading.Lock()
_cache: Registries | None = None


def get_registries() -> Registries:
    """All registries, discovering plugins on the first call in this process."""
    global _cache
    if _cache is None:
        with _lock:
            if _cache is None:
                _cache = discover()
    return _cache


def reset() -> None:
    """Forget what was discovered (for tests that install plugins on the fly)."""
    global _cache
    with _lock:
        _cache = None
