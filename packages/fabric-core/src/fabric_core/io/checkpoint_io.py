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
    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read the checkpoint at ``path``; ``weights_only`` (when not ``None``) as in ``torch.load``.

        Fabric passes ``weights_only`` only when the caller of ``fabric.load`` gave one, so an IO that
        does not take it keeps working until someone asks for it.
        """

    @abstractmethod
    def remove_checkpoint(self, path: str | Path) -> None:
        """Delete the checkpoint at ``path``."""

    def teardown(self) -> None:
        """Release what this IO holds (open handles, background writers)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def load_with(checkpoint_io: Any, path: str | Path, weights_only: bool | None = None) -> Any:
    """``checkpoint_io.load_checkpoint(path)``, passing ``weights_only`` only when one was asked for."""
    if weights_only is None:
        return checkpoint_io.load_checkpoint(path)
    if not isinstance(weights_only, bool):
        raise TypeError(f"weights_only={weights_only!r}: expected True, False or None (the checkpoint IO's default).")
    return checkpoint_io.load_checkpoint(path, weights_only=weights_only)
