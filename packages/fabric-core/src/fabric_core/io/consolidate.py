"""What a plugin subclasses to teach ``fabric consolidate`` a checkpoint format.

``fabric consolidate CHECKPOINT_DIR`` turns a checkpoint directory (shards written by several
processes) into one file that ``torch.load`` opens. fabric-core knows no format itself: each comes
from a plugin, registered by name through the ``fabric_register_checkpoint_consolidators`` hook
(fabric-fsdp registers ``fsdp``, fabric-deepspeed ``deepspeed``). The command asks every registered
format whether it :meth:`~CheckpointConsolidator.recognizes` the directory and uses the one that does,
or the one named by ``--format NAME``.

This module imports nothing heavy: the command imports every registered consolidator to ask it, so
a consolidator's module imports torch (and its backend) inside :meth:`~CheckpointConsolidator.consolidate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

__all__ = ["CheckpointConsolidator"]


class CheckpointConsolidator(ABC):
    """One format of checkpoint directory, turned into one ``torch.save`` file by ``fabric consolidate``.

    A complete plugin, for a folder holding one ``torch.save`` file per top-level key and a ``keys.json``
    that lists them::

        # pyproject.toml of your distribution
        [project.entry-points.fabric]
        key_files = "my_package.fabric_plugin"

        # my_package/fabric_plugin.py: imports nothing heavy, names the class as a string
        from fabric_core.plugins import hookimpl

        @hookimpl
        def fabric_register_checkpoint_consolidators(registry):
            registry.register(
                "key_files", "my_package.key_files:KeyFilesConsolidator", description="a folder of one file per key"
            )

        # my_package/key_files.py
        import json
        from pathlib import Path

        from fabric_core.io import CheckpointConsolidator


        class KeyFilesConsolidator(CheckpointConsolidator):
            def recognizes(self, path: Path) -> bool:
                return (path / "keys.json").is_file()

            def consolidate(self, path: Path, output: Path) -> Path:
                import torch  # here, not at the top: recognizes() runs for every directory

                from fabric_core.io import atomic_torch_save

                keys = json.loads((path / "keys.json").read_text())
                missing = sorted(name for name in keys.values() if not (path / name).is_file())
                if missing:
                    raise ValueError(f"'{path}' lacks {', '.join(missing)}, which keys.json lists: it is incomplete.")
                state = {key: torch.load(path / name, map_location="cpu") for key, name in keys.items()}
                atomic_torch_save(state, output)  # a crash leaves no half-written file
                return output

    Then ``fabric consolidate ckpt/`` writes ``ckpt.consolidated``, and ``--format key_files`` picks the
    format by name. ``fabric plugins`` lists ``key_files`` under the plugin's consolidators.

    The name is the registered one (what ``--format`` takes); the ``description`` given to ``register()``
    is what ``fabric consolidate`` shows when it lists the installed formats. The class is constructed
    with the registration's keyword arguments, so one class can serve several names.
    """

    @abstractmethod
    def recognizes(self, path: Path) -> bool:
        """Whether the directory ``path`` is a checkpoint of this format.

        Called for every registered format on every ``fabric consolidate`` without ``--format``, so it
        only looks at the names (or a small marker file) in ``path``: no heavy import, no tensor loaded.
        Exactly one installed format should answer ``True`` for a given checkpoint; when two do, the
        command asks the user to choose with ``--format``.
        """

    @abstractmethod
    def consolidate(self, path: Path, output: Path) -> Path:
        """Write the checkpoint in the directory ``path`` as one file that ``torch.load`` opens; return its path.

        ``output`` is where the user asked for the file (``CHECKPOINT_DIR.consolidated`` by default); write
        it atomically (``fabric_core.io.atomic_torch_save``) and return the path written. Raise
        ``ValueError`` with what is wrong and how to fix it when ``path`` is not a usable checkpoint of
        this format (``--format`` may name a format that does not recognize the directory), or
        ``fabric_core.io.CheckpointCorruptError`` when its files are damaged: ``fabric consolidate``
        prints the message and exits with status 2.
        """
