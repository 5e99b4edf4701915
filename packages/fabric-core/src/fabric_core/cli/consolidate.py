"""``fabric consolidate CHECKPOINT_DIR [--output FILE] [--format NAME]``: a checkpoint directory as one file.

The formats come from plugins: each is a :class:`fabric_core.io.CheckpointConsolidator` registered by
name through the ``fabric_register_checkpoint_consolidators`` hook (fabric-fsdp's ``fsdp`` reads what
``fabric.save`` writes with a sharded strategy; fabric-deepspeed's ``deepspeed`` reads DeepSpeed's
checkpoints). The command asks every installed format whether it recognizes the directory and uses
the one that does, or the one ``--format NAME`` names::

    $ fabric consolidate checkpoints/step-1000
    fabric consolidate: wrote checkpoints/step-1000.consolidated (812.4 MiB; format fsdp)

Exit status: 0 when the file was written; 2, with the reason on stderr, when the directory does not
exist, when no installed format (or more than one) recognizes it, when ``--format`` names no installed
format, or when the format refuses the checkpoint; 1 when the format's plugin misbehaved.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabric_core.io.consolidate import CheckpointConsolidator
    from fabric_core.plugins.registry import Entry, Registry


def _parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabric consolidate",
        description=(
            "Turn a checkpoint directory (shards written by several processes, e.g. by fabric.save with\n"
            "strategy='fsdp', 'model_parallel' or 'deepspeed') into one file that torch.load opens.\n"
            "Runs in one process; needs the whole checkpoint in CPU memory."
        ),
        epilog="\n".join(["checkpoint formats:", *_format_lines(registry)]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint_dir", type=Path, metavar="CHECKPOINT_DIR", help="the checkpoint directory")
    parser.add_argument(
        "--output",
        "-o",
        "--output_file",
        dest="output",
        metavar="FILE",
        type=Path,
        default=None,
        help="the file to write (default: CHECKPOINT_DIR.consolidated next to the directory)",
    )
    parser.add_argument(
        "--format",
        dest="format",
        metavar="NAME",
        default=None,
        help="the checkpoint format (default: the installed format that recognizes the directory)",
    )
    return parser


def _format_lines(registry: Registry) -> list[str]:
    """One line per installed format, then one per first-party or contested format that cannot be used."""
    from fabric_core.plugins.registry import FIRST_PARTY

    entries = list(registry)
    width = max((len(entry.name) for entry in entries), default=0)
    lines = [f"  {entry.name.ljust(width)}  {entry.description}".rstrip() for entry in entries]
    if not lines:
        lines.append("  none installed")
    usable = set(registry.names())
    unusable = [name for name in [*FIRST_PARTY.get(registry.kind, {}), *registry.conflicts] if name not in usable]
    for name in dict.fromkeys(unusable):
        try:
            registry.get(name)
        except ValueError as err:  # what to install, or why an installed one is unusable
            lines.append(f"  not available: {err}")
    return lines


def _default_output(checkpoint_dir: Path) -> Path:
    """``CHECKPOINT_DIR.consolidated``, next to the directory (``.`` and ``..`` are resolved first)."""
    if checkpoint_dir.name in ("", ".."):
        checkpoint_dir = checkpoint_dir.resolve()
    return checkpoint_dir.with_name(checkpoint_dir.name + ".consolidated")


def _check_directory(path: Path) -> None:
    if not path.exists():
        raise ValueError(f"'{path}' is not a checkpoint directory: it does not exist.")
    if not path.is_dir():
        raise ValueError(
            f"'{path}' is not a checkpoint directory: it is a file. fabric consolidate turns a directory of shards "
            "into one file; pass the directory that fabric.save wrote."
        )


def _create(entry: Entry) -> CheckpointConsolidator:
    try:
        return entry.create()
    except (ImportError, TypeError) as err:  # the plugin's class is missing or not a CheckpointConsolidator
        raise ValueError(str(err)) from err


def _ask(entry: Entry, path: Path) -> CheckpointConsolidator | None:
    """``entry``'s consolidator if it recognizes ``path``, else ``None``; every failure names the registration."""
    consolidator = entry.create()  # ImportError or TypeError, naming the registration
    try:
        recognized = consolidator.recognizes(path)
    except Exception as err:
        what = f"{type(consolidator).__qualname__}.recognizes('{path}')"
        raise RuntimeError(f"{entry.who}: {what} raised {type(err).__name__}: {err}") from err
    return consolidator if recognized else None


def _recognizes(entry: Entry, path: Path) -> CheckpointConsolidator | None:
    """:func:`_ask`, skipping a broken format with a warning so that the others are still found.

    Under ``FABRIC_STRICT_PLUGINS=1`` a broken format is an error instead
    (:func:`fabric_core.plugins.manager.skip_broken_entry`).
    """
    from fabric_core.plugins.manager import skip_broken_entry

    if entry.skipped is not None:
        return None
    try:
        return _ask(entry, path)
    except Exception as err:
        skip_broken_entry(entry, err, "choosing the checkpoint format")
        return None


def choose(registry: Registry, path: Path, name: str | None = None) -> tuple[str, CheckpointConsolidator]:
    """The format for the checkpoint directory ``path``: the one named ``name``, else the one recognizing it.

    Raises ``ValueError`` saying what is installed and what to do when ``name`` is unknown, or when no
    installed format (or more than one) recognizes ``path``.
    """
    if name is not None:
        return name, _create(registry.get(name))
    found = [(entry.name, c) for entry in registry if (c := _recognizes(entry, path)) is not None]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(name for name, _ in found)
        raise ValueError(
            f"'{path}' is recognized by more than one checkpoint format: {names}. Name the one to use with "
            "--format NAME."
        )
    raise ValueError(
        "\n".join(
            [
                f"no installed checkpoint format recognizes '{path}'. Checkpoint formats (--format NAME):",
                *_format_lines(registry),
                "Pass the directory that fabric.save wrote with a sharded strategy, or install the package of its "
                "format.",
            ]
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fabric consolidate``; returns the exit status described in the module docstring."""
    from fabric_core.io.integrity import CheckpointCorruptError
    from fabric_core.plugins.manager import get_registries

    registry = get_registries().consolidators
    try:
        args = _parser(registry).parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # --help, or a usage error already reported by argparse
        return exit_.code if isinstance(exit_.code, int) else 2
    output = args.output or _default_output(args.checkpoint_dir)
    try:
        _check_directory(args.checkpoint_dir)
        name, consolidator = choose(registry, args.checkpoint_dir, args.format)
        written = Path(consolidator.consolidate(args.checkpoint_dir, output))
    except (ValueError, CheckpointCorruptError) as err:
        print(f"fabric consolidate: {err}", file=sys.stderr)
        return 2
    if not written.is_file():
        print(
            f"fabric consolidate: checkpoint format '{name}' reported writing '{written}', which is not a file: "
            "a bug of the plugin providing it (fabric plugins names it).",
            file=sys.stderr,
        )
        return 1
    print(f"fabric consolidate: wrote {written} ({written.stat().st_size / 2**20:.1f} MiB; format {name})")
    return 0
