"""The ``fabric`` command: ``fabric run``, ``fabric plugins`` and commands added by plugins."""

from __future__ import annotations

import sys
from collections.abc import Sequence

_BUILTIN = {
    "run": ("fabric_core.cli.run:main", "Run a training script on several processes and/or nodes"),
    "plugins": ("fabric_core.cli.plugins:main", "List the installed plugins and what they register"),
}


def _usage(commands: dict[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in commands)
    lines = ["usage: fabric COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in sorted(commands.items())]
    lines += ["", "Run 'fabric COMMAND --help' for a command's options."]
    return "\n".join(lines)


def _plugin_commands() -> dict[str, tuple[str, str]]:
    from fabric_core.plugins.manager import get_registries

    return {entry.name: (entry, entry.description) for entry in get_registries().commands}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fabric`` console script and of ``python -m fabric_core``."""
    from fabric_core.plugins.manager import PluginError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except PluginError as err:  # FABRIC_STRICT_PLUGINS=1 and a plugin failed: say so, without a traceback
        print(f"fabric: {err}", file=sys.stderr)
        return 1


def _dispatch(args: list[str]) -> int:
    from fabric_core.plugins.registry import load_target

    if not args or args[0] in ("-h", "--help"):
        commands = {**_plugin_commands(), **_BUILTIN}
        print(_usage(commands))
        return 0 if args else 2
    if args[0] == "--version":
        from fabric_core.__about__ import __version__

        print(f"fabric-core {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name in _BUILTIN:
        command = load_target(_BUILTIN[name][0])
    else:
        plugin_commands = _plugin_commands()
        if name not in plugin_commands:
            print(f"fabric: {_unknown_command(name, plugin_commands)}", file=sys.stderr)
            return 2
        command = plugin_commands[name][0].load()
    result = command(rest)
    return int(result or 0)


def _unknown_command(name: str, plugin_commands: dict[str, tuple]) -> str:
    import difflib

    from fabric_core.plugins.manager import get_registries

    registry = get_registries().commands
    if name in registry:  # registered by two plugins: the registry's error names both
        try:
            registry.get(name)
        except ValueError as err:
            return str(err)
    known = sorted({*_BUILTIN, *plugin_commands})
    message = f"unknown command {name!r}. Commands: {', '.join(known)}."
    close = difflib.get_close_matches(name, known, n=1)
    return message + (f" Did you mean {close[0]!r}?" if close else "")
