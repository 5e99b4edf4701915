"""``fabric plugins [--json]``: which plugins are installed, what each registers and what went wrong.

Human output, one block per plugin, then the name conflicts and a summary::

    core  fabric-core 0.1.0  (fabric_core.plugins.builtin)
      accelerators          cpu, mps
      strategies            single_device, ddp, ...
    broken  my-plugin 1.2  (my_plugin.fabric)  FAILED
      error: importing my_plugin.fabric: ModuleNotFoundError: No module named 'missing_dependency'

    conflicts:
      strategy 'fast': fast-a 1.0 (plugin 'fast'), fast-b 2.0 (plugin 'fast')

    2 plugins: 1 loaded, 1 failed, 0 disabled; 1 name conflict

``--json`` prints one JSON document instead (schema version 1; keys are only ever added)::

    {
      "schema_version": 1,
      "plugins": [
        {
          "name": "core",                         # the entry-point name
          "distribution": "fabric-core",
          "version": "0.1.0",
          "module": "fabric_core.plugins.builtin",
          "status": "ok",                         # "ok", "failed" or "disabled"
          "registered": {                         # every kind, always present, in registration order
            "accelerators": ["cpu", "mps"], "strategies": [...], "precisions": [...],
            "cluster_environments": [...], "loggers": [], "commands": []
          },
          "overridden": [                         # names this plugin registered that another one won
            {"kind": "strategies", "name": "ddp",
             "by": {"distribution": "my-ddp", "version": "1.0", "plugin": "my_ddp"}}
          ],
          "errors": []                            # "what failed: ExceptionType: message"
        }
      ],
      "conflicts": [                              # names that cannot be used until one side goes
        {"kind": "strategies", "name": "fast",
         "registered_by": [{"distribution": "fast-a", "version": "1.0", "plugin": "fast"}, ...]}
      ]
    }

Exit status: 0 when every plugin loaded (disabled plugins are fine) and no name is contested; 1 when a
plugin failed or a name conflict exists, so that ``fabric plugins >/dev/null`` works as a health check
in CI. Under ``FABRIC_STRICT_PLUGINS=1`` discovery stops at the first failure: the error is printed on
stderr and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fabric_core.plugins.manager import PluginInfo, Registries
    from fabric_core.plugins.registry import Entry

SCHEMA_VERSION = 1
_WIDTH = 100


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabric plugins",
        description="List the installed fabric plugins, what each registers, and what failed to load.",
        epilog="Exit status 1 when a plugin failed to load or two plugins register the same name.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema in the docs)")
    return parser


def _kinds() -> list[str]:
    from fabric_core.plugins._hooks import KINDS

    return list(KINDS)


def _source(entry: Entry) -> dict[str, str]:
    return {"distribution": entry.distribution, "version": entry.version, "plugin": entry.plugin}


def _status(info: PluginInfo) -> str:
    if info.disabled:
        return "disabled"
    return "failed" if info.errors else "ok"


def _overridden(info: PluginInfo, registries: Registries) -> list[dict[str, Any]]:
    """The names ``info`` registered that resolve to another plugin's registration."""
    found = []
    for kind, names in info.registered.items():
        winners = {entry.name: entry for entry in registries[kind]}
        for name in names:
            winner = winners.get(name)
            if winner is not None and (winner.distribution, winner.plugin) != (info.distribution, info.name):
                found.append({"kind": kind, "name": name, "by": _source(winner)})
    return found


def _conflicts(registries: Registries) -> list[dict[str, Any]]:
    return [
        {"kind": kind, "name": name, "registered_by": [_source(entry) for entry in entries]}
        for kind in _kinds()
        for name, entries in sorted(registries[kind].conflicts.items())
    ]


def collect(registries: Registries) -> dict[str, Any]:
    """The ``--json`` document for ``registries`` (see the module docstring for its schema)."""
    kinds = _kinds()
    plugins = [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "status": _status(info),
            "registered": {kind: list(info.registered.get(kind, [])) for kind in kinds},
            "overridden": _overridden(info, registries),
            "errors": list(info.errors),
        }
        for info in registries.plugins
    ]
    return {"schema_version": SCHEMA_VERSION, "plugins": plugins, "conflicts": _conflicts(registries)}


def _describe(source: dict[str, str]) -> str:
    return f"{source['distribution']} {source['version']}".strip() + f" (plugin '{source['plugin']}')"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def render(document: dict[str, Any]) -> str:
    """The human-readable listing of a :func:`collect` document."""
    from fabric_core.plugins.registry import KIND_LABELS

    contested = {(c["kind"], c["name"]) for c in document["conflicts"]}
    lines: list[str] = []
    label_width = max(len(kind) for kind in _kinds()) + 2
    for plugin in document["plugins"]:
        header = f"{plugin['name']}  {plugin['distribution']} {plugin['version']}".rstrip()
        header += f"  ({plugin['module']})"
        if plugin["status"] != "ok":
            header += f"  {plugin['status'].upper()}"
        lines.append(header)
        overridden = {(o["kind"], o["name"]): o["by"] for o in plugin["overridden"]}
        for kind, names in plugin["registered"].items():
            if not names:
                continue
            shown = []
            for name in names:
                if (kind, name) in contested:
                    shown.append(f"{name} (CONFLICT)")
                elif (kind, name) in overridden:
                    shown.append(f"{name} (overridden by {overridden[kind, name]['distribution']})")
                else:
                    shown.append(name)
            indent = " " * (2 + label_width)
            lines.append(
                textwrap.fill(
                    ", ".join(shown),
                    width=_WIDTH,
                    initial_indent=f"  {kind.replace('_', ' '):<{label_width}}",
                    subsequent_indent=indent,
                    break_on_hyphens=False,
                )
            )
        lines += [f"  error: {error}" for error in plugin["errors"]]
    if document["conflicts"]:
        lines += ["", "conflicts:"]
        for conflict in document["conflicts"]:
            label = KIND_LABELS.get(conflict["kind"], conflict["kind"])
            sources = ", ".join(_describe(s) for s in conflict["registered_by"])
            lines.append(f"  {label} '{conflict['name']}': {sources}")
    statuses = [plugin["status"] for plugin in document["plugins"]]
    counts = ", ".join(f"{statuses.count(s)} {word}" for s, word in [("ok", "loaded"), ("failed", "failed")])
    conflicts = _plural(len(document["conflicts"]), "name conflict")
    lines += [
        "",
        f"{_plural(len(statuses), 'plugin')}: {counts}, {statuses.count('disabled')} disabled; {conflicts}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run ``fabric plugins``; returns the exit status described in the module docstring."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exit_:  # --help, or a bad option already reported by argparse
        return exit_.code if isinstance(exit_.code, int) else 2

    from fabric_core.plugins.manager import PluginError, get_registries

    try:
        registries = get_registries()
    except PluginError as err:
        print(f"fabric plugins: {err}", file=sys.stderr)
        return 1
    document = collect(registries)
    print(json.dumps(document, indent=2) if args.json else render(document))
    healthy = all(p["status"] != "failed" for p in document["plugins"]) and not document["conflicts"]
    return 0 if healthy else 1
