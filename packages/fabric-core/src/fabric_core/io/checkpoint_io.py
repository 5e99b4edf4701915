"""The checkpoint-IO interface: how a checkpoint dictionary reaches storage and comes back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any


class CheckpointIO(ABC):
    """Writes and reads checkpoint dictionaries. Pass an instance in ``Fabric(plugins=...)``.

    Example::

        class CompressedCheckpointIO(CheckpointIO):
            def save_checkpoint(self, checkpoint, path, storage_options=None):
                with gzip.open(path, "wb") as f:
                    torch.save(checkpoint, f)

            def load_checkpoint(self, path, map_location=None):
                with gzip.open(path, "rb") as f:
                    return torch.load(f, map_location=map_location)

            def remove_checkpoint(self, path):
                os.remove(path)
    """

    @abstractmethod
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path``."""

    @abstractmethod
    def load_checkpoint(self, path: str | Path, map_location: Any | None = None) -> dict[str, Any]:
        """Read the checkpoint at ``path``."""

    @abstractmethod
    def remove_checkpoint(self, path: str | Path) -> None:
        """Delete the checkpoint at ``path``."""

    def teardown(self) -> None:
        """Release what this IO holds (open handles, background writers)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
