"""Checkpoints written with ``torch.save``: atomically, so a crash never leaves a half-written file."""

from __future__ import annotations

import os
import pickle
import stat
import tempfile
import threading
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from fabric_core.io.checkpoint_io import CheckpointIO


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _BackgroundFlush:
    """Flush a file being written to disk from a second thread, while it is written.

    The final ``fsync`` then has little left to do, so a durable save costs about what a plain
    ``torch.save`` to the page cache costs.
    """

    def __init__(self, fd: int, interval: float = 0.02) -> None:
        self._fd = fd
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fabric-checkpoint-flush", daemon=True)

    def _run(self) -> None:
        flush = getattr(os, "fdatasync", os.fsync)
        while not self._done.wait(self._interval):
            try:
                flush(self._fd)
            except OSError:  # the file is being closed, or the filesystem cannot sync: the final fsync decides
                return

    def __enter__(self) -> _BackgroundFlush:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def _new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "wb")`` would give: an existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_torch_save(obj: Any, path: str | Path, fsync: bool = True) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same directory and an atomic rename.

    Readers see either the previous file or the complete new one, never a partial write; with
    ``fsync`` the data also survives a power loss once this returns.
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp_name, _new_file_mode(path))  # mkstemp creates 0600; keep torch.save's permissions
        with os.fdopen(fd, "wb") as f:
            with _BackgroundFlush(f.fileno()) if fsync else nullcontext():
                torch.save(obj, f)
                f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        _fsync_directory(directory)


class TorchCheckpointIO(CheckpointIO):
    """Saves with ``torch.save`` atomically and loads with ``torch.load``.

    Args:
        fsync: flush the file and its directory to disk before the save returns (default). Turning it
            off keeps the write atomic against a crash of the process, not against a power loss.
        weights_only: passed to ``torch.load``. Fabric checkpoints may hold arbitrary Python objects
            (the remainder of ``fabric.save``), so the default is ``False``: load only files you trust.
    """

    def __init__(self, fsync: bool = True, weights_only: bool = False) -> None:
        self.fsync = fsync
        self.weights_only = weights_only

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"TorchCheckpointIO.save_checkpoint takes no storage_options (got {storage_options!r}); "
                "write a CheckpointIO subclass to support them."
            )
        atomic_torch_save(checkpoint, path, fsync=self.fsync)

    def load_checkpoint(self, path: str | Path, map_location: Any | None = None) -> dict[str, Any]:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Checkpoint file not found: '{path}'. Check the path, or save one first.")
        if path.is_dir():
            raise IsADirectoryError(
                f"Checkpoint '{path}' is a directory, which TorchCheckpointIO cannot read: it loads single files "
                "written by fabric.save() with a single-file strategy. A sharded checkpoint needs the strategy "
                "that wrote it (e.g. strategy='fsdp')."
            )
        try:
            return torch.load(
                path,
                map_location=map_location if map_location is not None else "cpu",
                weights_only=self.weights_only,
            )
        except PermissionError:
            raise
        except pickle.UnpicklingError as err:
            if self.weights_only and "Weights only load failed" in str(err):
                raise RuntimeError(
                    f"Checkpoint '{path}' holds Python objects that weights_only=True refuses to load ({err}). If "
                    "you trust the file, load it with TorchCheckpointIO(weights_only=False)."
                ) from err
            raise self._corrupt(path, err) from err
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
            raise self._corrupt(path, err) from err

    @staticmethod
    def _corrupt(path: Path, err: BaseException) -> RuntimeError:
        return RuntimeError(
            f"Checkpoint '{path}' is corrupt or truncated and cannot be loaded ({type(err).__name__}: {err}). "
            "Restore it from a copy or load an earlier checkpoint; fabric.save() writes atomically, so a file "
            "it wrote is only damaged by changes made after the save."
        )

    def remove_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
