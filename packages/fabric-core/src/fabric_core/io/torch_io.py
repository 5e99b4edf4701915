"""Checkpoints written with ``torch.save``: atomically, then flushed to disk without holding up training.

A save writes a temporary file in the target's directory and renames it over the target once it is
complete, so a reader (or a crash at any moment) sees the previous checkpoint or the whole new one.
Flushing the file to the disk (``fsync``) costs as much again as writing it on most disks; by default
it runs in a background thread after the rename, while the next training steps run, and everything
that depends on the flush waits for it first: the next save, ``remove_checkpoint``, ``teardown`` and
the end of the process. Until the flush is done, the version it replaced is kept
beside it as ``.<name>.previous`` (a hard link, no copy), so even a power loss in that window leaves a
complete checkpoint on the disk.
"""

from __future__ import annotations

import atexit
import errno
import os
import pickle
import stat
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import torch

from fabric_core.io import errors, faults, leftovers
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.io.durable import fsync_directory


def previous_version_path(path: str | Path) -> Path:
    """Where a save in progress keeps the version of ``path`` it replaced: ``.<name>.previous`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.previous")


class _PendingFlush:
    """The ``fsync`` of one checkpoint, in a thread, after the file was renamed into place."""

    def __init__(self, fd: int, path: Path, previous: Path | None) -> None:
        self.path = path
        self.previous = previous
        self.error: BaseException | None = None
        self.reported = False
        self._fd = fd
        # Not a daemon: the interpreter waits for it at exit, so a script that ends right after its
        # last save still leaves that checkpoint on the disk.
        self._thread = threading.Thread(target=self._run, name="fabric-checkpoint-fsync", daemon=False)

    def start(self) -> None:
        self._thread.start()

    def run_here(self) -> None:
        """Flush in the calling thread and raise what fails."""
        self._run()
        if self.error is not None:
            raise RuntimeError(self.message()) from self.error

    def _run(self) -> None:
        try:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
            faults.checkpoint_step("tmp-synced")
            fsync_directory(self.path.parent)
            faults.checkpoint_step("directory-synced")
            if self.previous is not None:
                self.previous.unlink(missing_ok=True)
                faults.checkpoint_step("previous-removed")
        except BaseException as err:  # reported by the next wait_for_checkpoint_flushes() or at exit
            self.error = err

    def join(self) -> None:
        self._thread.join()

    def message(self) -> str:
        kept = (
            f" The version it replaced is kept at '{self.previous}'."
            if self.previous is not None and self.previous.exists()
            else ""
        )
        return (
            f"Checkpoint '{self.path}' was written completely, but flushing it to the disk failed "
            f"({type(self.error).__name__}: {self.error}), so it may not survive a power loss.{kept} Check the "
            "disk (free space, errors in the system log) and save the checkpoint again."
        )


_pending: list[_PendingFlush] = []
_pending_lock = threading.Lock()


def wait_for_checkpoint_flushes() -> None:
    """Block until every checkpoint this process saved with a background flush is on the disk.

    Raises ``RuntimeError`` naming the checkpoint if a flush failed (each failure is raised once).
    ``TorchCheckpointIO`` calls this before every save, in ``remove_checkpoint`` and in ``teardown``;
    the interpreter waits at exit too. Loading does not wait: the file is complete before the save
    returns.
    """
    with _pending_lock:
        pending = list(_pending)
    if not pending:
        return
    for flush in pending:
        flush.join()
    failed = []
    with _pending_lock:
        for flush in pending:
            if flush in _pending:
                _pending.remove(flush)
            if flush.error is not None and not flush.reported:
                flush.reported = True
                failed.append(flush)
    if failed:
        message = failed[0].message()
        if len(failed) > 1:
            message += (
                f" ({len(failed) - 1} more checkpoint(s) failed to flush: "
                + ", ".join(f"'{flush.path}'" for flush in failed[1:])
                + ".)"
            )
        raise RuntimeError(message) from failed[0].error


def _report_unflushed_at_exit() -> None:
    # Runs after the interpreter has joined the flush threads (they are not daemons).
    try:
        wait_for_checkpoint_flushes()
    except RuntimeError as err:
        print(f"fabric_core: {err}", file=sys.stderr)


atexit.register(_report_unflushed_at_exit)


def _forget_pending_in_child() -> None:
    # A forked child inherits the list but not the threads; the parent still owns those flushes.
    global _pending_lock
    _pending.clear()
    _pending_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pending_in_child)


def _flush_in_background(fd: int, path: Path, previous: Path | None) -> None:
    flush = _PendingFlush(fd, path, previous)
    with _pending_lock:
        _pending.append(flush)
    try:
        flush.start()
    except RuntimeError:  # no new thread to be had (e.g. at interpreter shutdown): flush right here
        with _pending_lock:
            _pending.remove(flush)
        flush.run_here()


def _keep_previous(path: Path) -> Path | None:
    """Hard-link the current ``path`` to its ``.previous`` name; ``None`` where that is impossible."""
    previous = previous_version_path(path)
    staging = leftovers.owned_path(path, "link")
    try:
        os.link(path, staging)
        faults.checkpoint_step("previous-linked")
        os.replace(staging, previous)
        if os.path.lexists(staging):
            # Both names were links to one file (a save killed after keeping its previous version): POSIX
            # rename() then does nothing and leaves the staging name.
            os.unlink(staging)
    except OSError:  # no hard links on this filesystem, or path is not a regular file
        try:
            os.unlink(staging)
        except OSError:
            pass
        return None
    return previous


def _new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "wb")`` would give: an existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create the temporary file a save of ``path`` writes first, named after this process; its fd and path."""
    tmp = leftovers.owned_path(path, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        os.chmod(tmp, _new_file_mode(path))  # os.open's mode is reduced by the umask; keep torch.save's permissions
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


class _RecordingWriter:
    """The file ``torch.save`` writes to: keeps the OS error a write raised.

    torch turns a failed write into ``[enforce fail at inline_container.cc] unexpected pos``; the error
    kept here says what really happened (usually no space left).
    """

    def __init__(self, file: Any) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as err:
            self.error = err
            raise


def _tensor_bytes(obj: Any) -> int | None:
    """About how many bytes ``torch.save(obj)`` writes: its tensors' storages, each counted once."""
    seen: dict[int, int] = {}
    stack = [obj]
    while stack and len(seen) < 1_000_000:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            try:
                storage = item.untyped_storage()
                seen[storage.data_ptr() or id(storage)] = storage.nbytes()
            except (RuntimeError, NotImplementedError):  # tensor subclasses without a plain storage
                continue
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return sum(seen.values()) or None


def atomic_torch_save(obj: Any, path: str | Path, fsync: bool = True, background: bool = False) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same directory and an atomic rename.

    Readers see either the previous file or the complete new one, never a partial write, whatever moment
    the process is killed at. The temporary file is named after this process
    (:func:`fabric_core.io.leftovers.owned_path`), and every save first removes the temporaries that
    killed saves of the same path left behind (:func:`fabric_core.io.leftovers.remove_leftovers`).

    Args:
        fsync: flush the file and its directory to the disk, so that they survive a power loss.
        background: with ``fsync``, rename the file into place as soon as it is written and flush it in a
            background thread; the version it replaces stays at :func:`previous_version_path` until the
            flush is done. :func:`wait_for_checkpoint_flushes` waits for it (the next save does). Off,
            the file is flushed before the rename and this returns once it is on the disk. POSIX only;
            elsewhere the flush is always done before returning.

    Raises:
        OSError: the save failed for a reason of the file system (``errno`` kept: ``ENOSPC``, ``EROFS``,
            ``PermissionError``, ``NotADirectoryError``, ...); the message names ``path``, the cause and the
            fix. Nothing of the new checkpoint is left, and the previous one is intact.
    """
    path = Path(path)
    # One flush in flight at a time, and the previous save's failure is reported before a new one starts.
    wait_for_checkpoint_flushes()
    background = background and fsync and os.name == "posix"
    writer: _RecordingWriter | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        leftovers.remove_leftovers(path)
        fd, tmp = _create_temporary(path)
    except OSError as err:
        raise errors.explain_save_error(err, path) from None
    keep_fd: int | None = None
    previous: Path | None = None
    try:
        faults.checkpoint_step("tmp-created")
        with os.fdopen(fd, "wb") as f:
            writer = _RecordingWriter(f)
            torch.save(obj, writer)
            f.flush()
            faults.checkpoint_step("tmp-written")
            if background:
                keep_fd = os.dup(f.fileno())
            elif fsync:
                os.fsync(f.fileno())
                faults.checkpoint_step("tmp-synced")
        # The file is closed before the rename: on NFS, closing sends its data to the server, so a process
        # on another node that opens the new name reads all of it.
        if keep_fd is not None and os.path.lexists(path):
            previous = _keep_previous(path)
            if previous is None:  # cannot keep the old version: the new one must be on the disk before replacing it
                os.fsync(keep_fd)
                os.close(keep_fd)
                keep_fd = None
            faults.checkpoint_step("previous-kept")
        os.replace(tmp, path)
        faults.checkpoint_step("renamed")
    except BaseException as err:
        if keep_fd is not None:
            os.close(keep_fd)
        if previous is not None:
            previous.unlink(missing_ok=True)  # the old version is still at its own name
        try:
            tmp.unlink()
        except OSError:
            pass
        cause = writer.error if writer is not None and writer.error is not None else err
        explained = errors.explain_save_error(cause, path, needed=_tensor_bytes(obj))
        if explained is err:
            raise
        # The message says all the cause did; chaining would print torch's C++ message or the temporary's name.
        raise explained from None
    if keep_fd is not None:
        _flush_in_background(keep_fd, path, previous)
    elif fsync:
        fsync_directory(path.parent)
        faults.checkpoint_step("directory-synced")


class WeightsOnlyLoadError(RuntimeError, pickle.UnpicklingError):
    """A checkpoint holds Python objects that ``weights_only=True`` refused to unpickle.

    Also a ``pickle.UnpicklingError``, the type ``torch.load`` (and so Lightning) raises here.
    """


class TorchCheckpointIO(CheckpointIO):
    """Saves with ``torch.save`` atomically and loads with ``torch.load``.

    Args:
        fsync: flush every checkpoint and its directory to the disk (default), so it survives a power
            loss. Off, the write stays atomic against a crash of the process, not against a power loss.
        fsync_in_background: flush after the file is renamed into place, in a background thread, so
            ``save_checkpoint`` returns as soon as the file is complete (default). The version it replaced
            is kept as ``.<name>.previous`` until the flush is done; the next save, ``teardown`` and the end
            of the process wait for it. ``False`` flushes before the rename, and the save returns
            once the checkpoint is on the disk.
        weights_only: passed to ``torch.load``. Fabric checkpoints may hold arbitrary Python objects
            (the remainder of ``fabric.save``), so the default is ``False``: load only files you trust.
    """

    def __init__(self, fsync: bool = True, fsync_in_background: bool = True, weights_only: bool = False) -> None:
        for name, value in (
            ("fsync", fsync),
            ("fsync_in_background", fsync_in_background),
            ("weights_only", weights_only),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"TorchCheckpointIO({name}={value!r}): expected True or False.")
        self.fsync = fsync
        self.fsync_in_background = fsync_in_background
        self.weights_only = weights_only

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"TorchCheckpointIO.save_checkpoint takes no storage_options (got {storage_options!r}); "
                "write a CheckpointIO subclass to support them."
            )
        atomic_torch_save(checkpoint, path, fsync=self.fsync, background=self.fsync_in_background)

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read ``path`` with ``torch.load``; ``weights_only=None`` uses this IO's own setting."""
        weights_only = self.weights_only if weights_only is None else weights_only
        # No wait for a flush in progress: the file was complete and in place before save returned, and
        # reading it does not need it on the disk.
        path = Path(path)
        try:
            is_directory = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError as err:  # not found, a file where a folder should be, no permission to look
            raise errors.explain_load_error(err, path) from None
        if is_directory:
            raise IsADirectoryError(
                errno.EISDIR,
                f"Checkpoint '{path}' is a directory, which TorchCheckpointIO cannot read: it loads single files "
                "written by fabric.save() with a single-file strategy. A sharded checkpoint needs the strategy "
                "that wrote it (e.g. strategy='fsdp').",
            )
        try:
            return torch.load(
                path,
                map_location=map_location if map_location is not None else "cpu",
                weights_only=weights_only,
            )
        except pickle.UnpicklingError as err:
            if weights_only and "Weights only load failed" in str(err):
                raise WeightsOnlyLoadError(
                    f"Checkpoint '{path}' holds Python objects that weights_only=True refuses to load ({err}). If "
                    "you trust the file, load it with weights_only=False (fabric.load(..., weights_only=False) or "
                    "TorchCheckpointIO(weights_only=False))."
                ) from err
            raise self._corrupt(path, err) from err
        except OSError as err:
            if err.errno is not None:  # permission denied, an I/O error of the disk, ...
                raise errors.explain_load_error(err, path) from None
            raise self._corrupt(path, err) from err
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
            raise self._corrupt(path, err) from err

    @staticmethod
    def _corrupt(path: Path, err: BaseException) -> RuntimeError:
        previous = previous_version_path(path)
        if previous.is_file():
            advice = (
                f"The version it replaced is at '{previous}': the machine probably stopped while the new file was "
                "still being flushed to the disk. Load that one (or copy it back over the damaged file)."
            )
        else:
            advice = (
                "Restore it from a copy or load an earlier checkpoint; fabric.save() writes atomically, so a file "
                "it wrote is only damaged by changes made after the save (or by a power loss while it was flushed). "
                f"`fabric checkpoint verify {path}` lists the damaged records."
            )
        return RuntimeError(
            f"Checkpoint '{path}' is corrupt or truncated and cannot be loaded ({type(err).__name__}: {err}). {advice}"
        )

    def remove_checkpoint(self, path: str | Path) -> None:
        wait_for_checkpoint_flushes()
        path = Path(path)
        previous_version_path(path).unlink(missing_ok=True)
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def teardown(self) -> None:
        """Wait until every checkpoint saved in the background is on the disk."""
        wait_for_checkpoint_flushes()

    def __repr__(self) -> str:
        return (
            f"TorchCheckpointIO(fsync={self.fsync}, fsync_in_background={self.fsync_in_background}, "
            f"weights_only={self.weights_only})"
        )
