"""The ``fabric`` command: the built-in ``run``, ``plugins``, ``checkpoint`` and ``consolidate``, and plugins' commands.

Every command, the built-in ones included, is a name in the ``commands`` registry (fabric-core
registers its own through its ``fabric_register_cli_commands`` hook), so a plugin command named
like a built-in one meets the rule for every core name: the built-in is kept and ``fabric plugins``
reports the clash; only ``override=True`` replaces it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def _usage(commands: dict[str, str]) -> str:
    width = max(len(name) for name in commands)
    lines = ["usage: fabric COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, help_ in sorted(commands.items())]
    lines += ["", "Run 'fabric COMMAND --help' for a command's options."]
    return "\n".join(lines)


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
    from fabric_core.plugins.manager import get_registries

    if args and args[0] == "--version":
        from fabric_core.__about__ import __version__

        print(f"fabric-core {__version__}")
        return 0
    registry = get_registries().commands
    if not args or args[0] in ("-h", "--help"):
        print(_usage({entry.name: entry.description for entry in registry}))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    try:
        command = registry.get(name)
    except ValueError as err:  # unknown (with the closest name), contested, or a first-party command not installed
        print(f"fabric: {err}", file=sys.stderr)
        return 2
    result = command.load()(rest)
    return int(result or 0)
