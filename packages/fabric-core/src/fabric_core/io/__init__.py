"""Checkpoint input and output."""

from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.io.torch_io import TorchCheckpointIO, atomic_torch_save

__all__ = ["CheckpointIO", "TorchCheckpointIO", "atomic_torch_save"]
