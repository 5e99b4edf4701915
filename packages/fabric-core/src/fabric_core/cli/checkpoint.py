"""``fabric checkpoint verify PATH [PATH...] [--json]``: check that checkpoints are intact without loading them.

Each checkpoint is checked as ``fabric.load(path, verify=True)`` would check it: a single file by the
CRC-32 of every record ``torch.save`` wrote into it, a checkpoint folder by its manifest
(``fabric-manifest.json``: every file present with its size and CRC-32). Nothing is unpickled, so it is
safe on files you do not trust, and torch is not imported::

    $ fabric checkpoint verify runs/epoch3.ckpt runs/epoch4.ckpt
    runs/epoch3.ckpt: intact
    'runs/epoch4.ckpt': record 'epoch4/data/0' fails its CRC-32 check (its bytes changed after it was written).

``--json`` prints one document instead (schema version 1; keys are only ever added)::

    {"schema_version": 1,
     "checkpoints": [{"path": "runs/epoch3.ckpt", "intact": true, "problems": []}, ...]}

Exit status: 0 when every checkpoint is intact, 1 when any has a problem (one line per problem), 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

SCHEMA_VERSION = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabric checkpoint",
        description="Work with saved checkpoints without loading them.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    verify = commands.add_parser(
        "verify",
        help="check that checkpoints are intact (CRC-32 of every record, or the folder's manifest)",
        description="Check that checkpoint files or folders are intact, without loading them: the CRC-32 of "
        "every record of a torch.save file, or every file a checkpoint folder's manifest lists.",
        epilog="Exit status: 0 when every checkpoint is intact, 1 when any has a problem, 2 on a usage error.",
    )
    verify.add_argument("paths", nargs="+", metavar="PATH", help="a checkpoint file or folder")
    verify.add_argument("--json", action="store_true", help="print one JSON document (schema in the docs)")
    return parser


def verify(paths: Sequence[str]) -> dict:
    """The ``--json`` document for ``paths``."""
    from fabric_core.io.integrity import verify_checkpoint

    checkpoints = []
    for path in paths:
        problems = verify_checkpoint(path)
        checkpoints.append({"path": path, "intact": not problems, "problems": problems})
    return {"schema_version": SCHEMA_VERSION, "checkpoints": checkpoints}


def main(argv: Sequence[str]) -> int:
    """Run ``fabric checkpoint``; returns the exit status described in the module docstring."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exit_:  # --help, or a usage error already reported by argparse
        return exit_.code if isinstance(exit_.code, int) else 2
    document = verify(args.paths)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        for checkpoint in document["checkpoints"]:
            if checkpoint["intact"]:
                print(f"{checkpoint['path']}: intact")
            for problem in checkpoint["problems"]:
                print(problem)
    return 0 if all(checkpoint["intact"] for checkpoint in document["checkpoints"]) else 1
