"""The ``fsdp`` checkpoint format of ``fabric consolidate``: a ``torch.distributed.checkpoint`` directory.

Registered by :mod:`fabric_fsdp.plugin`; recognizing a directory imports neither torch nor this
package's strategies, only consolidating does.
"""

from __future__ import annotations

from pathlib import Path

from fabric_core.io.consolidate import CheckpointConsolidator
from fabric_fsdp.commit import DCP_METADATA


class DCPConsolidator(CheckpointConsolidator):
    """A sharded checkpoint written by ``fabric.save`` with ``strategy="fsdp"`` or ``"model_parallel"``.

    Also reads a directory that ``torch.distributed.checkpoint.save`` wrote without fabric. The file it
    writes is :func:`fabric_fsdp.consolidate_checkpoint`'s::

        fabric consolidate checkpoints/step-1000 --output step-1000.pt
    """

    def recognizes(self, path: Path) -> bool:
        return (path / DCP_METADATA).is_file()

    def consolidate(self, path: Path, output: Path) -> Path:
        from fabric_fsdp.checkpoint import consolidate_checkpoint

        return consolidate_checkpoint(path, output)
