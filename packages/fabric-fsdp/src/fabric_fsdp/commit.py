"""What a sharded checkpoint adds to fabric-core's folder commit (:mod:`fabric_core.io.commit`).

A sharded save of ``ckpt`` goes through fabric-core's protocol; its steps end with
``faults.checkpoint_step(name)``, where tests crash the process on purpose:

=============================  ===================================================================
``sharded-staging-created``    rank 0 made ``.ckpt.partial.HOST.PID.TOKEN`` beside ``ckpt`` (and told every rank)
``sharded-shards-written``     every rank wrote its ``__RANK_N.distcp`` files and checksummed them
``sharded-meta-written``       rank 0 wrote ``meta.pt`` (the state that is not a model or an optimizer)
``sharded-manifest-written``   rank 0 wrote ``fabric-manifest.json`` (every file's size and CRC-32), last:
                               **the commit record** — a folder with a manifest is a complete checkpoint
``sharded-exchanged``,         :func:`fabric_core.io.commit.commit` put the folder in place (an atomic
``sharded-previous-kept``,     exchange, or two renames) and deleted the old checkpoint
``sharded-renamed``,
``sharded-previous-removed``
=============================  ===================================================================

Two rules are the sharded format's own (:data:`SHARDED`): a folder without a manifest, written by an
older fabric-fsdp, is complete when it has ``.metadata`` and ``meta.pt``; and the folders older versions
left beside an interrupted save, ``.NAME.fabric-partial`` and ``.NAME.fabric-previous``, are named by loads (their
owner and age are unknown) and removed after the next commit (:func:`remove_legacy_leftovers`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fabric_core.io import commit as folder_commit

#: The DCP file that makes a directory a sharded checkpoint, and the file of the other state.
DCP_METADATA = ".metadata"
META_FILE = "meta.pt"
#: What older fabric-fsdp versions named its staging and kept folders (no owner in the name).
LEGACY_SUFFIXES = (".fabric-partial", ".fabric-previous")


def written_without_manifest(folder: Path) -> bool:
    """Whether a folder without a manifest (an older fabric-fsdp) is a complete sharded checkpoint."""
    return (folder / DCP_METADATA).is_file() and (folder / META_FILE).is_file()


#: The sharded format's rules for :mod:`fabric_core.io.commit`.
SHARDED = folder_commit.Rules(
    name="sharded",
    complete_without_manifest=written_without_manifest,
    legacy_suffixes=LEGACY_SUFFIXES,
    legacy_writer="an older fabric-fsdp",
)


def remove_legacy_leftovers(path: Path) -> None:
    """After a commit: remove the staging and kept folders an older fabric-fsdp left (``.NAME.fabric-*``)."""
    for suffix in LEGACY_SUFFIXES:
        entry = path.with_name(f".{path.name}{suffix}")
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
