"""``fabric consolidate CHECKPOINT_DIR --output FILE``: a sharded checkpoint as one ``torch.save`` file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabric consolidate",
        description=(
            "Turn a sharded checkpoint directory (written by fabric.save with strategy='fsdp' or 'model_parallel') "
            "into one file that torch.load opens: the same nested dict fabric.save writes with "
            "state_dict_type='full'. Runs in one process; needs the whole checkpoint in CPU memory."
        ),
    )
    parser.add_argument("checkpoint_dir", type=Path, help="the sharded checkpoint directory")
    parser.add_argument(
        "--output",
        "-o",
        "--output_file",
        dest="output",
        type=Path,
        default=None,
        help="the file to write (default: CHECKPOINT_DIR.consolidated next to the directory)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fabric consolidate``; returns the exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    output = args.output or args.checkpoint_dir.with_name(args.checkpoint_dir.name + ".consolidated")
    from fabric_fsdp.checkpoint import consolidate_checkpoint

    try:
        written = consolidate_checkpoint(args.checkpoint_dir, output)
    except ValueError as err:
        print(f"fabric consolidate: {err}", file=sys.stderr)
        return 2
    print(f"fabric consolidate: wrote {written} ({written.stat().st_size / 2**20:.1f} MiB)")
    return 0
