"""Checkpoint input and output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.io.checkpoint_io import CheckpointIO
    from fabric_core.io.consolidate import CheckpointConsolidator
    from fabric_core.io.durable import fsync_directory
    from fabric_core.io.errors import explain_load_error, explain_save_error
    from fabric_core.io.integrity import CheckpointCorruptError, verify_checkpoint
    from fabric_core.io.torch_io import (
        TorchCheckpointIO,
        atomic_torch_save,
        previous_version_path,
        wait_for_checkpoint_flushes,
    )

__all__ = [
    "CheckpointConsolidator",
    "CheckpointCorruptError",
    "CheckpointIO",
    "TorchCheckpointIO",
    "atomic_torch_save",
    "explain_load_error",
    "explain_save_error",
    "fsync_directory",
    "previous_version_path",
    "verify_checkpoint",
    "wait_for_checkpoint_flushes",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CheckpointConsolidator": "fabric_core.io.consolidate",
        "CheckpointCorruptError": "fabric_core.io.integrity",
        "CheckpointIO": "fabric_core.io.checkpoint_io",
        "TorchCheckpointIO": "fabric_core.io.torch_io",
        "atomic_torch_save": "fabric_core.io.torch_io",
        "explain_load_error": "fabric_core.io.errors",
        "explain_save_error": "fabric_core.io.errors",
        "fsync_directory": "fabric_core.io.durable",
        "previous_version_path": "fabric_core.io.torch_io",
        "verify_checkpoint": "fabric_core.io.integrity",
        "wait_for_checkpoint_flushes": "fabric_core.io.torch_io",
    },
)
