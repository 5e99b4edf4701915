"""Putting a sharded checkpoint directory in place so that a crash at any moment loses nothing.

A save of ``ckpt`` goes through these steps; each ends with ``faults.checkpoint_step(name)``, where tests
crash the process on purpose:

=============================  ===================================================================
``sharded-staging-created``    rank 0 made ``.ckpt.partial.HOST.PID.TOKEN`` beside ``ckpt`` (and told every rank)
``sharded-shards-written``     every rank wrote its ``__RANK_N.distcp`` files and checksummed them
``sharded-meta-written``       rank 0 wrote ``meta.pt`` (the state that is not a model or an optimizer)
``sharded-manifest-written``   rank 0 wrote ``fabric-manifest.json`` (every file's size and CRC-32), last:
                               **the commit record** — a folder with a manifest is a complete checkpoint
``sharded-exchanged``          Linux: the staging folder and the old ``ckpt`` swapped names in one atomic
                               ``renameat2(RENAME_EXCHANGE)``, so ``ckpt`` never ceases to exist; elsewhere
                               (or where the file system refuses it, e.g. NFS) two renames instead:
``sharded-previous-kept``      the old ``ckpt`` was renamed to ``.ckpt.previous.HOST.PID.TOKEN``
``sharded-renamed``            the staging folder was renamed to ``ckpt``
``sharded-previous-removed``   the old checkpoint was deleted
=============================  ===================================================================

The recovery rule (:func:`locate`): a load uses the newest *complete* copy among ``ckpt`` and the folders
that interrupted saves of dead processes left beside it, ordered by the time their manifest records. When
that copy is not ``ckpt`` itself it warns, naming the folder. When the choice cannot be made safely (the
copies belong to another host or a live process, or their age is unknown), it raises ``FileNotFoundError``
naming each complete copy and the ``mv`` command that restores one. The next save first moves the newest
complete copy into place (:func:`recover`), then removes every leftover of dead owners.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fabric_core.io import faults, integrity, leftovers
from fabric_core.io.durable import fsync_directory

#: The kinds of :func:`fabric_core.io.leftovers.owned_path` names a sharded save uses.
STAGING_KIND = "partial"
PREVIOUS_KIND = "previous"
#: The DCP file that makes a directory a sharded checkpoint, and the file of the other state.
DCP_METADATA = ".metadata"
META_FILE = "meta.pt"
#: What fabric-fsdp 0.x named its staging and kept folders (no owner in the name).
LEGACY_SUFFIXES = (".fabric-partial", ".fabric-previous")
#: Swap the new folder and the old checkpoint atomically where Linux allows it; tests switch it off to
#: check the two-rename commit that other systems use.
USE_RENAME_EXCHANGE = True

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


@dataclass(frozen=True)
class Copy:
    """A complete sharded checkpoint folder found at or beside the checkpoint path."""

    path: Path
    #: ``time.time()`` of the save, from its manifest; ``None`` when it has no manifest (older versions).
    saved_at: float | None
    #: ``"path"`` (the checkpoint itself), ``"dead"`` (left by an ended process of this host), ``"live"``,
    #: ``"elsewhere"`` (another host's) or ``"legacy"`` (named by an older version, owner unknown).
    owner: str

    def describe(self) -> str:
        when = "age unknown"
        if self.saved_at is not None:
            when = f"saved {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.saved_at))}"
        whose = {
            "dead": "left by an interrupted save",
            "live": "of a save still running on this host",
            "elsewhere": "of a save on another host",
            "legacy": "left by an interrupted save of an older fabric-fsdp",
            "path": "the checkpoint",
        }[self.owner]
        return f"'{self.path}' ({whose}, {when})"


@dataclass(frozen=True)
class Decision:
    """What :func:`locate` found: the folder to load (with a warning when it is not the path), or an error."""

    source: str | None
    warning: str | None = None
    error: str | None = None


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a whole checkpoint: a manifest whose files all exist with their sizes.

    A folder without a manifest (written by an older version) counts when it has ``.metadata`` and ``meta.pt``.
    """
    try:
        manifest = integrity.read_manifest(folder)
    except (OSError, ValueError):
        return False
    if manifest is None:
        return (folder / DCP_METADATA).is_file() and (folder / META_FILE).is_file()
    for name, entry in manifest["files"].items():
        try:
            if (folder / name).stat().st_size != entry.get("size"):
                return False
        except OSError:
            return False
    return True


def saved_at(folder: Path) -> float | None:
    """The save time its manifest records, or ``None``."""
    try:
        manifest = integrity.read_manifest(folder)
    except (OSError, ValueError):
        return None
    value = (manifest or {}).get("saved_at")
    return float(value) if isinstance(value, (int, float)) else None


def _leftover_folders(path: Path) -> list[tuple[Path, str]]:
    """Folders beside ``path`` that sharded saves of it left, with who owns them."""
    try:
        names = os.listdir(path.parent if str(path.parent) else ".")
    except OSError:
        return []
    here = leftovers.host_id()
    found = []
    for name in sorted(names):
        entry = path.parent / name
        owner = leftovers.owner_of(entry, path)
        if owner is not None:
            kind, host, pid = owner
            if kind not in (STAGING_KIND, PREVIOUS_KIND):
                continue
            if host != here:
                found.append((entry, "elsewhere"))
            elif pid == os.getpid() or leftovers.pid_is_alive(pid):
                found.append((entry, "live"))
            else:
                found.append((entry, "dead"))
        elif name in {f".{path.name}{suffix}" for suffix in LEGACY_SUFFIXES}:
            found.append((entry, "legacy"))
    return [(entry, owner) for entry, owner in found if entry.is_dir() and not entry.is_symlink()]


def _copies(path: Path) -> tuple[list[Copy], list[Path]]:
    """The complete copies beside ``path``, and the incomplete folders."""
    complete, incomplete = [], []
    for entry, owner in _leftover_folders(path):
        if is_complete(entry):
            complete.append(Copy(entry, saved_at(entry), owner))
        else:
            incomplete.append(entry)
    return complete, incomplete


def _restore_command(copy: Copy, path: Path) -> str:
    return f"mv {shlex.quote(str(copy.path))} {shlex.quote(str(path))}"


def locate(path: str | os.PathLike) -> Decision:
    """Which folder a load of the sharded checkpoint ``path`` should read (see the module docstring)."""
    path = Path(path)
    copies, incomplete = _copies(path)
    usable = [copy for copy in copies if copy.owner == "dead" and copy.saved_at is not None]
    newest = max(usable, key=lambda copy: copy.saved_at, default=None)  # type: ignore[arg-type, return-value]
    if path.is_dir() and is_complete(path):
        current = Copy(path, saved_at(path), "path")
        if newest is not None and (current.saved_at is None or newest.saved_at > current.saved_at):  # type: ignore[operator]
            return Decision(str(newest.path), warning=_newer_warning(path, newest, current))
        return Decision(str(path))
    if path.exists() or path.is_symlink():
        return Decision(str(path))  # a file, or a folder that is no checkpoint: the loader says what it is
    if not copies:
        return Decision(None, error=_not_found(path, incomplete))
    others = [copy for copy in copies if copy not in usable]
    ties = [copy for copy in usable if newest is not None and copy.saved_at == newest.saved_at]
    if newest is not None and not others and len(ties) == 1:
        return Decision(str(newest.path), warning=_interrupted_warning(path, newest))
    return Decision(None, error=_undecided(path, copies))


def _newer_warning(path: Path, newest: Copy, current: Copy) -> str:
    return (
        f"Checkpoint '{path}': a later save was interrupted after it had completely written its checkpoint, "
        f"{newest.describe()}; loading that one instead of the older {current.describe()}. The next fabric.save to "
        "this path puts it in place and removes the older one."
    )


def _interrupted_warning(path: Path, newest: Copy) -> str:
    return (
        f"Checkpoint '{path}' is missing because a save was interrupted while putting it in place; loading the "
        f"newest complete copy, {newest.describe()}. The next fabric.save to this path puts it back in place; to do "
        f"it now: {_restore_command(newest, path)}"
    )


def _not_found(path: Path, incomplete: list[Path]) -> str:
    message = f"Checkpoint not found: '{path}'."
    if incomplete:
        listed = ", ".join(f"'{entry}'" for entry in incomplete)
        message += (
            f" An interrupted save left only incomplete folders beside it ({listed}: no manifest, so not every shard "
            "was written); there is nothing complete to load. The next fabric.save to this path removes them."
        )
    else:
        message += " Check the path, or save a checkpoint there first."
    return message


def _undecided(path: Path, copies: list[Copy]) -> str:
    ordered = sorted(copies, key=lambda copy: -1.0 if copy.saved_at is None else copy.saved_at, reverse=True)
    listed = "\n".join(f"  - {copy.describe()}" for copy in ordered)
    return (
        f"Checkpoint not found: '{path}'. A save was interrupted while putting it in place, and which complete copy "
        f"to load cannot be decided safely here (another host's or a running process's save, or an unknown age). "
        f"The complete copies are:\n{listed}\nIf no save of this path is running, restore the one you want, e.g. the "
        f"first: {_restore_command(ordered[0], path)}"
    )


# -- the commit ----------------------------------------------------------------------------------------


def remove_folder(folder: Path) -> None:
    """Delete an old checkpoint, its manifest first (so that a crash midway leaves it incomplete, not wrong).

    Best effort: what cannot be deleted stays, as a leftover the next save of another process removes.
    """
    try:
        (folder / integrity.MANIFEST_NAME).unlink()
    except OSError:
        pass
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)
    else:
        try:
            folder.unlink()
        except OSError:
            pass


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "renameat2") else None  # glibc 2.28 and newer


def exchange(first: Path, second: Path) -> bool:
    """Swap the names of two existing entries in one atomic step; ``False`` where the system cannot."""
    if not USE_RENAME_EXCHANGE or sys.platform != "linux":
        return False
    libc = _libc()
    if libc is None:
        return False
    source, target = os.fsencode(first), os.fsencode(second)
    if libc.renameat2(_AT_FDCWD, source, _AT_FDCWD, target, _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:  # an old kernel, or a file system without it (NFS, ...)
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def commit(staging: Path, path: Path) -> None:
    """Put the complete folder ``staging`` at ``path``; the old checkpoint is moved aside, then deleted.

    At every moment a complete checkpoint exists: at ``path``, or at ``staging`` (its manifest is written)
    and the old one at its ``previous`` name, which :func:`locate` finds. With an atomic exchange the old
    checkpoint takes the staging folder's name, and ``path`` always holds one of the two.
    """
    previous = None
    if not (path.exists() or path.is_symlink()):
        os.replace(staging, path)
        faults.checkpoint_step("sharded-renamed")
    elif exchange(staging, path):
        previous = staging
        faults.checkpoint_step("sharded-exchanged")
    else:
        previous = leftovers.owned_path(path, PREVIOUS_KIND)
        os.replace(path, previous)
        faults.checkpoint_step("sharded-previous-kept")
        try:
            os.replace(staging, path)
        except OSError:
            os.replace(previous, path)  # the old checkpoint goes back where it was
            raise
        faults.checkpoint_step("sharded-renamed")
    fsync_directory(path.parent)
    if previous is not None:
        remove_folder(previous)
        faults.checkpoint_step("sharded-previous-removed")


def recover(path: Path) -> list[Path]:
    """Before a save of ``path``: move the newest complete copy into place, then remove dead saves' leftovers.

    Returns what was removed. Folders of live processes and of other hosts are never touched.
    """
    decision = locate(path)
    if decision.source is not None and Path(decision.source) != path:
        commit(Path(decision.source), path)
    return leftovers.remove_leftovers(path)


def remove_legacy_leftovers(path: Path) -> None:
    """After a commit: remove the staging and kept folders an older fabric-fsdp left (``.NAME.fabric-*``)."""
    for suffix in LEGACY_SUFFIXES:
        entry = path.with_name(f".{path.name}{suffix}")
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
