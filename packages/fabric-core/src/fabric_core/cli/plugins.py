"""``fabric plugins [--json] [--check]``: which plugins are installed, what each registers and what went wrong.

``fabric plugins new NAME [--kind KIND]`` creates a plugin package instead (see ``fabric_core.cli.new_plugin``).

Human output, one block per plugin, then the name conflicts and a summary::

    core  fabric-core 0.1.0  (fabric_core.plugins.builtin)
      accelerators          cpu, mps
      strategies            single_device, ddp, ...
    broken  my-plugin 1.2  (my_plugin.fabric)  FAILED
      error: importing my_plugin.fabric: ModuleNotFoundError: No module named 'missing_dependency'

    conflicts:
      strategy 'fast': fast-a 1.0 (plugin 'fast'), fast-b 2.0 (plugin 'fast')
      strategy 'ddp': fabric-core 0.1.0 (plugin 'core'), my-ddp 1.0 (plugin 'my_ddp'); fabric-core's is used

    2 plugins: 1 loaded, 1 failed, 0 disabled; 2 name conflicts

A plugin's name that lost to fabric-core's own (registered without ``override=True``) is shown as
``ddp (shadowed by fabric-core)`` and listed among the conflicts; fabric-core's keeps working.

``--check`` also imports every registered target (every registration, including those that lost)
and checks it against its kind: a subclass of the kind's base class, a callable for commands. Each
failure is printed with its kind, name, plugin and error::

    check: 40 targets, 1 failed
      TypeError: precision 'fast' of plugin 'fast' (fast-a 1.0) is the class fast_a.FastStrategy, not a ...

Plain ``fabric plugins`` imports no target, so it stays cheap.

``--json`` prints one JSON document instead (schema version 1; keys are only ever added)::

    {
      "schema_version": 1,
      "plugins": [
        {
          "name": "core",                         # the entry-point name
          "distribution": "fabric-core",
          "version": "0.1.0",
          "module": "fabric_core.plugins.builtin",
          "status": "ok",                         # "ok", "failed", "incompatible" or "disabled"
          "registered": {                         # every kind, always present, in registration order
            "accelerators": ["cpu", "mps"], "strategies": [...], "precisions": [...],
            "cluster_environments": [...], "loggers": [], "commands": [...], "consolidators": []
          },
          "overridden": [                         # names this plugin registered that another one won
            {"kind": "strategies", "name": "ddp",
             "by": {"distribution": "my-ddp", "version": "1.0", "plugin": "my_ddp"}}
          ],
          "errors": []                            # "what failed: ExceptionType: message"
        }
      ],
      "conflicts": [                              # contested names
        {"kind": "strategies", "name": "fast",
         "registered_by": [{"distribution": "fast-a", "version": "1.0", "plugin": "fast"}, ...],
         "resolves_to": null}                     # null: unusable until one side goes; or the core
                                                  # registration that was kept (a shadowed core name)
      ],
      "check": {                                  # only with --check
        "targets": 40,
        "failures": [{"kind": "precisions", "name": "fast", "distribution": "fast-a", "version": "1.0",
                      "plugin": "fast", "error": "TypeError: precision 'fast' of plugin ..."}]
      }
    }

Exit status: 0 when every plugin loaded (disabled plugins are fine), no name is contested and, with
``--check``, every target passed; 1 otherwise, so that ``fabric plugins --check >/dev/null`` works as
a health check in CI. Under ``FABRIC_STRICT_PLUGINS=1`` discovery stops at the first failure: the error is printed on
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
        epilog="Exit status 1 when a plugin failed to load or two plugins register the same name. "
        "To start a plugin of your own: fabric plugins new NAME [--kind KIND] (see fabric plugins new --help).",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema in the docs)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also import every registered target and check it is of its kind (exit 1 on any failure)",
    )
    return parser


def _kinds() -> list[str]:
    from fabric_core.plugins._hooks import KINDS

    return list(KINDS)


def _source(entry: Entry) -> dict[str, str]:
    return {"distribution": entry.distribution, "version": entry.version, "plugin": entry.plugin}


def _status(info: PluginInfo) -> str:
    if info.disabled:
        return "disabled"
    if info.incompatible:  # built for another fabric-core: never imported
        return "incompatible"
    return "failed" if info.errors else "ok"


def _overridden(info: PluginInfo, registries: Registries) -> list[dict[str, Any]]:
    """The names ``info`` registered that another plugin's ``override=True`` registration took."""
    found = []
    for kind, names in info.registered.items():
        winners = {entry.name: entry for entry in registries[kind]}
        shadowed = registries[kind].shadowed
        for name in names:
            winner = winners.get(name)
            if winner is None or name in shadowed:  # contested: listed among the conflicts
                continue
            if (winner.distribution, winner.plugin) != (info.distribution, info.name):
                found.append({"kind": kind, "name": name, "by": _source(winner)})
    return found


def _conflicts(registries: Registries) -> list[dict[str, Any]]:
    found = []
    for kind in _kinds():
        registry = registries[kind]
        for name, entries in sorted(registry.conflicts.items()):
            found.append(
                {"kind": kind, "name": name, "registered_by": [_source(e) for e in entries], "resolves_to": None}
            )
        for name, entries in sorted(registry.shadowed.items()):
            kept = registry.get(name)
            found.append(
                {
                    "kind": kind,
                    "name": name,
                    "registered_by": [_source(e) for e in [kept, *entries]],
                    "resolves_to": _source(kept),
                }
            )
    return found


def check_targets(registries: Registries) -> dict[str, Any]:
    """Import every registered target and check its kind: the ``check`` part of the ``--check`` document."""
    failures, count = [], 0
    for kind in _kinds():
        for entry in registries[kind].registrations():
            count += 1
            try:
                entry.load()
            except Exception as err:  # what a user would meet on using the name, whatever the plugin did
                failures.append(
                    {"kind": kind, "name": entry.name, **_source(entry), "error": f"{type(err).__name__}: {err}"}
                )
    return {"targets": count, "failures": failures}


def collect(registries: Registries, check: bool = False) -> dict[str, Any]:
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
    document = {"schema_version": SCHEMA_VERSION, "plugins": plugins, "conflicts": _conflicts(registries)}
    if check:
        document["check"] = check_targets(registries)
    return document


def _describe(source: dict[str, str]) -> str:
    return f"{source['distribution']} {source['version']}".strip() + f" (plugin '{source['plugin']}')"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def render(document: dict[str, Any]) -> str:
    """The human-readable listing of a :func:`collect` document."""
    from fabric_core.plugins.registry import KIND_LABELS

    contested = {(c["kind"], c["name"]) for c in document["conflicts"] if c.get("resolves_to") is None}
    kept = {(c["kind"], c["name"]): c["resolves_to"] for c in document["conflicts"] if c.get("resolves_to")}
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
                elif (kind, name) in kept and kept[kind, name]["distribution"] != plugin["distribution"]:
                    shown.append(f"{name} (shadowed by {kept[kind, name]['distribution']})")
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
            line = f"  {label} '{conflict['name']}': {sources}"
            if conflict.get("resolves_to"):
                line += (
                    f"; {conflict['resolves_to']['distribution']}'s is used (a plugin replaces it only with "
                    "override=True)"
                )
            lines.append(line)
    statuses = [plugin["status"] for plugin in document["plugins"]]
    counts = ", ".join(
        f"{statuses.count(s)} {word}"
        for s, word in [("ok", "loaded"), ("failed", "failed"), ("incompatible", "incompatible")]
        if s != "incompatible" or s in statuses
    )
    conflicts = _plural(len(document["conflicts"]), "name conflict")
    lines += [
        "",
        f"{_plural(len(statuses), 'plugin')}: {counts}, {statuses.count('disabled')} disabled; {conflicts}",
    ]
    if "check" in document:
        failures = document["check"]["failures"]
        lines.append(f"check: {_plural(document['check']['targets'], 'target')}, {len(failures)} failed")
        lines += [f"  {failure['error']}" for failure in failures]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run ``fabric plugins``; returns the exit status described in the module docstring."""
    if argv and argv[0] == "new":  # `fabric plugins new NAME`: a plugin package from the template
        from fabric_core.cli import new_plugin

        return new_plugin.main(argv[1:])
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
    document = collect(registries, check=args.check)
    print(json.dumps(document, indent=2) if args.json else render(document))
    healthy = all(p["status"] in ("ok", "disabled") for p in document["plugins"]) and not document["conflicts"]
    return 0 if healthy and not document.get("check", {}).get("failures") else 1
