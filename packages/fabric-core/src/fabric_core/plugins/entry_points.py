"""Finding the entry points of one group quickly.

``importlib.metadata.entry_points()`` builds a Distribution object for every installed package and
parses all their entry-point files: several milliseconds in a typical environment, paid by the first
``Fabric(...)``. The common case, plain directories on ``sys.path`` holding ``*.dist-info`` folders,
only needs the few ``entry_points.txt`` files that name our group; that is what :func:`find` reads.
Anything else (zipped paths, custom distribution finders) goes through ``importlib.metadata``.
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple


class EntryPoint(NamedTuple):
    name: str
    value: str
    distribution: str
    version: str


def _standard_finders_only() -> bool:
    from importlib.machinery import PathFinder

    return all(finder is PathFinder or not hasattr(finder, "find_distributions") for finder in sys.meta_path)


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of ``[group]`` in an entry_points.txt."""
    entries, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            inside = line[1:-1].strip() == group
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            entries.append((name.strip(), value.strip()))
    return entries


def _name_and_version(meta_dir: str) -> tuple[str, str]:
    name, version = "", ""
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(meta_dir, filename), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Name:"):
                        name = line[5:].strip()
                    elif line.startswith("Version:"):
                        version = line[8:].strip()
                    elif not line.strip():
                        break  # the headers end at the first blank line
        except OSError:
            continue
        break
    return name, version


def _scan(group: str) -> list[EntryPoint] | None:
    found: list[EntryPoint] = []
    marker = f"[{group}]"
    for entry in sys.path:
        path = entry or os.getcwd()
        if not os.path.isdir(path):
            if os.path.exists(path):
                return None  # a zip or egg file: leave it to importlib.metadata
            continue
        try:
            names = os.listdir(path)
        except OSError:
            continue
        for folder in names:
            if not folder.endswith((".dist-info", ".egg-info")):
                continue
            meta_dir = os.path.join(path, folder)
            try:
                with open(os.path.join(meta_dir, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if marker not in text:
                continue
            name, version = _name_and_version(meta_dir)
            found.extend(EntryPoint(n, v, name or folder.split("-")[0], version) for n, v in _section(text, group))
    return found


def _with_importlib(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=group):
        dist = getattr(ep, "dist", None)
        found.append(
            EntryPoint(
                ep.name,
                ep.value,
                dist.metadata["Name"] if dist is not None else "unknown",
                dist.version if dist is not None else "",
            )
        )
    return found


def find(group: str) -> list[EntryPoint]:
    """Every entry point of ``group``, in ``sys.path`` order (duplicates of a distribution kept)."""
    if _standard_finders_only():
        scanned = _scan(group)
        if scanned is not None:
            return scanned
    return _with_importlib(group)
