"""Checkpoint input and output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.io.checkpoint_io import CheckpointIO
    from fabric_core.io.torch_io import (
        TorchCheckpointIO,
        atomic_torch_save,
        fsync_directory,
        previous_version_path,
        wait_for_checkpoint_flushes,
    )

__all__ = [
    "CheckpointIO",
    "TorchCheckpointIO",
    "atomic_torch_save",
    "fsync_directory",
    "previous_version_path",
    "wait_for_checkpoint_flushes",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CheckpointIO": "fabric_core.io.checkpoint_io",
        "TorchCheckpointIO": "fabric_core.io.torch_io",
        "atomic_torch_save": "fabric_core.io.torch_io",
        "fsync_directory": "fabric_core.io.torch_io",
        "previous_version_path": "fabric_core.io.torch_io",
        "wait_for_checkpoint_flushes": "fabric_core.io.torch_io",
    },
)
