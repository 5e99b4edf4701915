"""Discovering plugins through the ``fabric`` entry-point group, once per process, on first use."""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import warnings
from collections.abc import Callable
from types import FunctionType
from typing import Any

from fabric_core.plugins._hooks import HOOKS, KINDS, PROJECT
from fabric_core.plugins.registry import Registry, ScopedRegistry

ENTRY_POINT_GROUP = PROJECT
_MARK = PROJECT + "_impl"  # the attribute @hookimpl sets
STRICT_ENV = "FABRIC_STRICT_PLUGINS"
DISABLE_ENV = "FABRIC_DISABLE_PLUGINS"
CORE_DISTRIBUTION = "fabric-core"
CORE_MODULE = "fabric_core.plugins.builtin"


class PluginError(RuntimeError):
    """A plugin failed to load or its hook raised, and ``FABRIC_STRICT_PLUGINS=1`` asked to stop."""


class PluginLoadWarning(UserWarning):
    """A plugin failed to load or its hook raised; it was skipped."""


class PluginInfo:
    """What ``fabric plugins`` reports about one plugin."""

    __slots__ = ("disabled", "distribution", "errors", "module", "name", "registered", "version")

    def __init__(
        self,
        name: str,
        distribution: str,
        version: str,
        module: str,
        registered: dict[str, list[str]] | None = None,
        errors: list[str] | None = None,
        disabled: bool = False,
    ) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.module = module
        self.registered: dict[str, list[str]] = {} if registered is None else registered
        self.errors: list[str] = [] if errors is None else errors
        self.disabled = disabled

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "registered": self.registered,
            "errors": self.errors,
            "disabled": self.disabled,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PluginInfo) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.as_dict().items())
        return f"PluginInfo({fields})"


class Registries:
    """Every registry, filled by every plugin's hooks."""

    __slots__ = ("accelerators", "cluster_environments", "commands", "loggers", "plugins", "precisions", "strategies")

    def __init__(
        self,
        accelerators: Registry,
        strategies: Registry,
        precisions: Registry,
        cluster_environments: Registry,
        loggers: Registry,
        commands: Registry,
        plugins: list[PluginInfo],
    ) -> None:
        self.accelerators = accelerators
        self.strategies = strategies
        self.precisions = precisions
        self.cluster_environments = cluster_environments
        self.loggers = loggers
        self.commands = commands
        self.plugins = plugins

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


def _fail(info: PluginInfo, what: str, err: BaseException) -> None:
    message = f"{type(err).__name__}: {err}"
    info.errors.append(f"{what}: {message}")
    if _strict():
        raise PluginError(
            f"fabric plugin '{info.name}' from {info.distribution} {info.version}: {what} failed with "
            f"{message}. {STRICT_ENV}=1 makes this an error: fix or uninstall the plugin, or set "
            f"{DISABLE_ENV}={info.name} to skip it."
        ) from err
    text = (
        f"Skipping fabric plugin '{info.name}' from {info.distribution} {info.version}: {what} failed with "
        f"{message}. The other plugins keep working; set {DISABLE_ENV}={info.name} to stop loading it, or "
        f"{STRICT_ENV}=1 to make this an error."
    )
    warnings.warn(text, PluginLoadWarning, stacklevel=4)


def _entry_points() -> list[tuple[str, str, str, str]]:
    """(plugin name, module, distribution, version) for each ``fabric`` entry point, core first."""
    from fabric_core.plugins import entry_points

    found: dict[tuple[str, str], tuple[str, str, str, str]] = {}
    for ep in entry_points.find(ENTRY_POINT_GROUP):
        key = (ep.distribution.lower().replace("_", "-"), ep.name)
        found.setdefault(key, (ep.name, ep.value, ep.distribution, ep.version))
    plugins = sorted(found.values(), key=lambda p: (p[2].lower() != CORE_DISTRIBUTION, p[2].lower(), p[0]))
    if not any(p[1] == CORE_MODULE for p in plugins):
        # Running from a source tree that was never installed: the built-ins must still be there.
        from fabric_core.__about__ import __version__

        plugins.insert(0, ("core", CORE_MODULE, CORE_DISTRIBUTION, __version__))
    return plugins


def _hook_functions(module: Any) -> dict[str, Callable[..., Any]]:
    """The functions of ``module`` marked with ``@hookimpl``, by hook name, checked against the hooks.

    pluggy's own registration inspects every attribute of the module statically, which costs a few
    milliseconds per plugin at the first ``Fabric(...)``; the marker left on a function (by
    :data:`fabric_core.plugins.hookimpl` or by pluggy's ``HookimplMarker("fabric")``) is all that is
    needed to find the hooks.
    """
    found = {}
    for name, value in vars(module).items():
        if not isinstance(value, FunctionType):
            continue
        opts = value.__dict__.get(_MARK)
        if not isinstance(opts, dict):
            continue
        hook = opts.get("specname") or name
        where = f"{module.__name__}.{name}"
        if hook not in HOOKS:
            raise TypeError(
                f"{where} is marked @hookimpl for '{hook}', but there is no fabric hook of that name. "
                f"Hooks: {', '.join(HOOKS)}."
            )
        if opts.get("wrapper") or opts.get("hookwrapper"):
            raise TypeError(
                f"{where} is marked as a hook wrapper, but fabric hooks only register names: drop "
                "wrapper=True / hookwrapper=True and register directly."
            )
        unexpected = [p for p in inspect.signature(value).parameters if p != "registry"]
        if unexpected:
            raise TypeError(
                f"{where} takes {unexpected}, but fabric hooks are called with one argument, "
                f"`registry`: define it as `def {name}(registry):`."
            )
        if hook in found:
            raise TypeError(f"{module.__name__} implements '{hook}' twice; keep one function per hook.")
        found[hook] = value
    return found


def discover() -> Registries:
    """Import every plugin module and call its hooks. Prefer :func:`get_registries`, which caches."""
    registries = {kind: Registry(kind) for kind in KINDS}
    disabled = _disabled()
    disabled_by = f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV, '')}"
    infos: list[PluginInfo] = []
    loaded: list[tuple[PluginInfo, dict[str, Callable[..., Any]]]] = []
    for name, module_name, distribution, version in _entry_points():
        info = PluginInfo(name=name, distribution=distribution, version=version, module=module_name)
        infos.append(info)
        is_core = module_name == CORE_MODULE
        if not is_core and (name in disabled or distribution in disabled):
            info.disabled = True
            for registry in registries.values():
                registry.record_disabled(distribution, disabled_by)
            continue
        try:
            module = importlib.import_module(module_name.partition(":")[0])
            hooks = _hook_functions(module)
        except Exception as err:
            _fail(info, f"importing {module_name}", err)
            for registry in registries.values():
                registry.record_failure(distribution, info.errors[-1])
            continue
        loaded.append((info, hooks))

    for info, hooks in loaded:
        # All or nothing: a plugin whose hook raises contributes none of its names.
        scoped_registries: list[tuple[str, ScopedRegistry]] = []
        for hook_name, kind in HOOKS.items():
            function = hooks.get(hook_name)
            if function is None:
                continue
            scoped = ScopedRegistry(registries[kind], info.distribution, info.version, info.name)
            try:
                function(registry=scoped)
            except Exception as err:
                _fail(info, hook_name, err)
                for registry in registries.values():
                    registry.record_failure(info.distribution, info.errors[-1])
                break
            scoped_registries.append((kind, scoped))
        else:
            for kind, scoped in scoped_registries:
                names = scoped.commit()
                if names:
                    info.registered.setdefault(kind, []).extend(names)
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
