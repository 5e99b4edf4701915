"""Discovering plugins through the ``fabric`` entry-point group, once per process, on first use."""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FunctionType
from typing import Any

from fabric_core.plugins.registry import Registry, ScopedRegistry

ENTRY_POINT_GROUP = "fabric"
STRICT_ENV = "FABRIC_STRICT_PLUGINS"
DISABLE_ENV = "FABRIC_DISABLE_PLUGINS"
CORE_DISTRIBUTION = "fabric-core"
CORE_MODULE = "fabric_core.plugins.builtin"


class PluginError(RuntimeError):
    """A plugin failed to load or its hook raised, and ``FABRIC_STRICT_PLUGINS=1`` asked to stop."""


class PluginLoadWarning(UserWarning):
    """A plugin failed to load or its hook raised; it was skipped."""


@dataclass
class PluginInfo:
    """What ``fabric plugins`` reports about one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    registered: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    disabled: bool = False

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


@dataclass
class Registries:
    """Every registry, filled by every plugin's hooks."""

    accelerators: Registry
    strategies: Registry
    precisions: Registry
    cluster_environments: Registry
    loggers: Registry
    commands: Registry
    plugins: list[PluginInfo]

    def __getitem__(self, kind: str) -> Registry:
        return getattr(self, kind)


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
    """The functions of ``module`` marked with ``@hookimpl``, checked against the hook specifications.

    pluggy's own registration inspects every attribute of the module statically, which costs a few
    milliseconds per plugin at the first ``Fabric(...)``; the marker pluggy leaves on a function is
    all that is needed to find the hooks.
    """
    from fabric_core.plugins import hookspecs

    found = {}
    for name, value in vars(module).items():
        if not isinstance(value, FunctionType) or f"{ENTRY_POINT_GROUP}_impl" not in value.__dict__:
            continue
        if name not in hookspecs.HOOKS:
            raise TypeError(
                f"{module.__name__}.{name} is marked @hookimpl, but there is no fabric hook of that name. "
                f"Hooks: {', '.join(hookspecs.HOOKS)}."
            )
        unexpected = [p for p in inspect.signature(value).parameters if p != "registry"]
        if unexpected:
            raise TypeError(
                f"{module.__name__}.{name} takes {unexpected}, but fabric hooks are called with one argument, "
                f"`registry`: define it as `def {name}(registry):`."
            )
        found[name] = value
    return found


def discover() -> Registries:
    """Import every plugin module and call its hooks. Prefer :func:`get_registries`, which caches."""
    from fabric_core.plugins import hookspecs

    registries = {kind: Registry(kind) for kind in set(hookspecs.HOOKS.values())}
    disabled = _disabled()
    infos: list[PluginInfo] = []
    loaded: list[tuple[PluginInfo, dict[str, Callable[..., Any]]]] = []
    for name, module_name, distribution, version in _entry_points():
        info = PluginInfo(name=name, distribution=distribution, version=version, module=module_name)
        infos.append(info)
        is_core = module_name == CORE_MODULE
        if not is_core and (name in disabled or distribution in disabled):
            info.disabled = True
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
        for hook_name, kind in hookspecs.HOOKS.items():
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
