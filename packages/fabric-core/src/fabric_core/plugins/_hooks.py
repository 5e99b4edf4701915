"""The hook names and the ``hookimpl`` marker, without importing pluggy.

Discovery runs at the first ``Fabric(...)``, and importing pluggy costs about 5 ms there. Finding a
plugin's hooks needs only the attribute that pluggy's ``HookimplMarker("fabric")`` leaves on a
function, so :class:`HookimplMarker` writes that same attribute, with the same options, and pluggy
stays unimported until something asks for a ``PluginManager``. Functions marked either way are
found by fabric's discovery and by pluggy alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

PROJECT = "fabric"

#: hook name -> the registry kind it fills
HOOKS: dict[str, str] = {
    "fabric_register_accelerators": "accelerators",
    "fabric_register_strategies": "strategies",
    "fabric_register_precisions": "precisions",
    "fabric_register_cluster_environments": "cluster_environments",
    "fabric_register_loggers": "loggers",
    "fabric_register_cli_commands": "commands",
}

#: the registry kinds, in hook order
KINDS: tuple[str, ...] = tuple(dict.fromkeys(HOOKS.values()))

_F = TypeVar("_F", bound=Callable[..., Any])


class HookimplMarker:
    """Marks hook implementations exactly as ``pluggy.HookimplMarker(project_name)`` does.

    ``@hookimpl`` or ``@hookimpl(tryfirst=True, ...)`` sets ``function.<project>_impl`` to pluggy's
    option dictionary, so a pluggy ``PluginManager`` for the project registers the function too.
    """

    __slots__ = ("project_name",)

    def __init__(self, project_name: str) -> None:
        if not isinstance(project_name, str) or not project_name:
            raise TypeError(f"HookimplMarker needs a non-empty project name, got {project_name!r}.")
        self.project_name = project_name

    def __call__(
        self,
        function: _F | None = None,
        hookwrapper: bool = False,
        optionalhook: bool = False,
        tryfirst: bool = False,
        trylast: bool = False,
        specname: str | None = None,
        wrapper: bool = False,
    ) -> _F | Callable[[_F], _F]:
        opts = {
            "wrapper": wrapper,
            "hookwrapper": hookwrapper,
            "optionalhook": optionalhook,
            "tryfirst": tryfirst,
            "trylast": trylast,
            "specname": specname,
        }

        def mark(func: _F) -> _F:
            if not callable(func):
                raise TypeError(f"@hookimpl marks functions, got {func!r} ({type(func).__name__}).")
            setattr(func, self.project_name + "_impl", opts)
            return func

        return mark if function is None else mark(function)

    def __repr__(self) -> str:
        return f"HookimplMarker({self.project_name!r})"


hookimpl = HookimplMarker(PROJECT)
