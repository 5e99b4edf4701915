"""Putting a checkpoint folder in place so that a crash at any moment loses nothing.

A checkpoint that is a folder (fabric-fsdp's sharded saves, fabric-deepspeed's DeepSpeed directories, a
plugin's own format) cannot replace the previous one with a single rename of a file. This module is the
protocol they share. A save of ``ckpt`` never writes into ``ckpt`` itself:

1. global rank 0 calls :func:`create_staging`: an interrupted save's newest complete copy goes back in
   place and dead saves' folders are removed (:func:`recover`), then the staging folder
   ``.ckpt.partial.HOST.PID.TOKEN`` is made beside ``ckpt``; rank 0 broadcasts its name;
2. every rank writes its files into the staging folder;
3. rank 0 calls :func:`write_manifest_and_commit`: it writes the manifest
   (:func:`fabric_core.io.integrity.write_manifest`, every file's size and CRC-32 and the save time)
   last, as **the commit record** — a folder whose manifest lists files that all exist with their sizes
   is complete (:func:`is_complete`), and ``fabric checkpoint verify`` / ``fabric.load(..., verify=True)``
   check it — then :func:`commit` puts the staging folder at ``ckpt`` and deletes the old checkpoint.

A load asks :func:`locate` which folder to read: on rank 0, which alone can tell whether a save's owner
still runs, then broadcast. In code, with the strategy's ``broadcast`` and ``barrier``::

    from fabric_core.io import commit, errors, integrity

    RULES = commit.Rules(name="myformat")  # fault steps "myformat-staging-created", ...

    def save(path, state):
        reply = None
        if is_global_zero:
            try:
                reply = str(commit.create_staging(path, RULES))
            except OSError as err:
                reply = errors.explain_save_error(err, path)
        reply = broadcast(reply)
        if isinstance(reply, BaseException):
            raise reply
        staging = Path(reply)
        write_my_files(staging, state)  # every rank
        barrier()
        outcome = None
        if is_global_zero:
            try:
                written = sorted(p for p in staging.rglob("*") if p.is_file())
                files = {p.relative_to(staging).as_posix(): integrity.checksum_file(p) for p in written}
                commit.write_manifest_and_commit(staging, path, files, RULES)
            except OSError as err:
                commit.remove_folder(staging)
                outcome = errors.explain_save_error(err, path)
        outcome = broadcast(outcome)
        if outcome is not None:
            raise outcome

    def load(path):
        decision = broadcast(commit.locate(path, RULES) if is_global_zero else None)
        if decision.error is not None:
            raise FileNotFoundError(decision.error)
        if decision.warning is not None:
            warnings.warn(decision.warning)
        return read_my_files(Path(decision.source))

Each step ends with ``faults.checkpoint_step(f"{rules.name}-STEP")``, where tests crash the process on
purpose (:mod:`fabric_core.io.faults`); a format adds its own steps between them (``NAME-written``):

==========================  ========================================================================
``NAME-staging-created``    :func:`create_staging` made ``.ckpt.partial.HOST.PID.TOKEN`` beside ``ckpt``
``NAME-manifest-written``   :func:`write_manifest_and_commit` wrote the manifest: the new checkpoint is
                            complete
``NAME-exchanged``          Linux: the staging folder and the old ``ckpt`` swapped names in one atomic
                            ``renameat2(RENAME_EXCHANGE)``, so ``ckpt`` never ceases to exist; elsewhere
                            (or where the file system refuses it, e.g. NFS) two renames instead:
``NAME-previous-kept``      the old ``ckpt`` was renamed to ``.ckpt.previous.HOST.PID.TOKEN``
``NAME-renamed``            the staging folder was renamed to ``ckpt`` (the only step of a first save)
``NAME-previous-removed``   the old checkpoint was deleted
==========================  ========================================================================

The recovery rule (:func:`locate`): a load uses the newest *complete* copy among ``ckpt`` and the folders
that interrupted saves of dead processes left beside it, ordered by the time their manifest records. When
that copy is not ``ckpt`` itself it warns, naming the folder. When the choice cannot be made safely (the
copies belong to another host or a live process, or their age is unknown), it gives an error naming each
complete copy and the ``mv`` command that restores one. The next save first moves the newest complete
copy into place (:func:`recover`), then removes every leftover of dead owners.

This module imports neither torch nor anything heavy.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric_core.io import faults, integrity, leftovers
from fabric_core.io.durable import fsync_directory

__all__ = [
    "DEFAULT_RULES",
    "PREVIOUS_KIND",
    "STAGING_KIND",
    "USE_RENAME_EXCHANGE",
    "Copy",
    "Decision",
    "Rules",
    "commit",
    "create_staging",
    "create_staging_for_all",
    "exchange",
    "is_complete",
    "locate",
    "locate_for_all",
    "recover",
    "remove_folder",
    "saved_at",
    "write_manifest_and_commit",
]

#: The kinds of :func:`fabric_core.io.leftovers.owned_path` names the protocol uses beside the checkpoint.
STAGING_KIND = "partial"
PREVIOUS_KIND = "previous"
#: Swap the new folder and the old checkpoint atomically where Linux allows it; tests switch it off to
#: check the two-rename commit that other systems use.
USE_RENAME_EXCHANGE = True

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


@dataclass(frozen=True)
class Rules:
    """What one folder format adds to the protocol; the defaults suit a format that always wrote a manifest.

    Example: fabric-fsdp's sharded checkpoints, whose first versions wrote no manifest and named their
    staging folders without an owner::

        SHARDED = Rules(
            name="sharded",
            complete_without_manifest=lambda folder: (folder / ".metadata").is_file(),
            legacy_suffixes=(".fabric-partial", ".fabric-previous"),
            legacy_writer="an older fabric-fsdp",
        )
    """

    #: The format's name: :func:`commit`'s fault-injection steps are ``"{name}-renamed"`` and so on.
    name: str = "folder"
    #: Whether a folder *without* a manifest is complete (one written before the format had manifests);
    #: ``None``: never.
    complete_without_manifest: Callable[[Path], bool] | None = None
    #: Folders ``.CKPT{suffix}`` that older versions left beside ``CKPT``: owner unknown, so never chosen by
    #: :func:`locate` on their own, only named.
    legacy_suffixes: tuple[str, ...] = ()
    #: Who wrote the legacy folders, in messages ("an older fabric-fsdp").
    legacy_writer: str = "an older version"


#: The rules of a format that has always written a manifest.
DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class Copy:
    """A complete checkpoint folder found at or beside the checkpoint path."""

    path: Path
    #: ``time.time()`` of the save, from its manifest; ``None`` when it has no manifest (older versions).
    saved_at: float | None
    #: ``"path"`` (the checkpoint itself), ``"dead"`` (left by an ended process of this host), ``"live"``,
    #: ``"elsewhere"`` (another host's) or ``"legacy"`` (named by an older version, owner unknown).
    owner: str
    #: Who wrote a ``"legacy"`` folder, in :meth:`describe`.
    writer: str = "an older version"

    def describe(self) -> str:
        """``'PATH' (whose, when)``, as messages name a copy."""
        when = "age unknown"
        if self.saved_at is not None:
            when = f"saved {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.saved_at))}"
        whose = {
            "dead": "left by an interrupted save",
            "live": "of a save still running on this host",
            "elsewhere": "of a save on another host",
            "legacy": f"left by an interrupted save of {self.writer}",
            "path": "the checkpoint",
        }[self.owner]
        return f"'{self.path}' ({whose}, {when})"


@dataclass(frozen=True)
class Decision:
    """What :func:`locate` found: the folder to load (with a warning when it is not the path), or an error.

    Picklable, so that rank 0 can broadcast it. Exactly one of ``source`` and ``error`` is set.
    """

    source: str | None
    warning: str | None = None
    error: str | None = None


def is_complete(folder: str | os.PathLike, rules: Rules = DEFAULT_RULES) -> bool:
    """Whether ``folder`` holds a whole checkpoint: a manifest whose files all exist with their sizes.

    A folder without a manifest counts only when ``rules.complete_without_manifest`` says so.
    """
    folder = Path(folder)
    try:
        manifest = integrity.read_manifest(folder)
    except (OSError, ValueError):
        return False
    if manifest is None:
        return rules.complete_without_manifest is not None and bool(rules.complete_without_manifest(folder))
    for name, entry in manifest["files"].items():
        try:
            if (folder / name).stat().st_size != entry.get("size"):
                return False
        except OSError:
            return False
    return True


def saved_at(folder: str | os.PathLike) -> float | None:
    """The save time (``time.time()``) the manifest of ``folder`` records, or ``None``."""
    try:
        manifest = integrity.read_manifest(folder)
    except (OSError, ValueError):
        return None
    value = (manifest or {}).get("saved_at")
    return float(value) if isinstance(value, (int, float)) else None


def _leftover_folders(path: Path, rules: Rules) -> list[tuple[Path, str]]:
    """Folders beside ``path`` that saves of it left, with who owns them."""
    try:
        names = os.listdir(path.parent if str(path.parent) else ".")
    except OSError:
        return []
    here = leftovers.host_id()
    legacy = {f".{path.name}{suffix}" for suffix in rules.legacy_suffixes}
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
        elif name in legacy:
            found.append((entry, "legacy"))
    return [(entry, owner) for entry, owner in found if entry.is_dir() and not entry.is_symlink()]


def _copies(path: Path, rules: Rules) -> tuple[list[Copy], list[Path]]:
    """The complete copies beside ``path``, and the incomplete folders."""
    complete, incomplete = [], []
    for entry, owner in _leftover_folders(path, rules):
        if is_complete(entry, rules):
            complete.append(Copy(entry, saved_at(entry), owner, rules.legacy_writer))
        else:
            incomplete.append(entry)
    return complete, incomplete


def _restore_command(copy: Copy, path: Path) -> str:
    return f"mv {shlex.quote(str(copy.path))} {shlex.quote(str(path))}"


def locate(path: str | os.PathLike, rules: Rules = DEFAULT_RULES) -> Decision:
    """Which folder a load of the checkpoint folder ``path`` should read (see the module docstring).

    A file at ``path``, or a folder that is no complete checkpoint, is returned as it is: the loader says
    what it is. Call it on global rank 0 and broadcast the decision.
    """
    path = Path(path)
    copies, incomplete = _copies(path, rules)
    usable = [copy for copy in copies if copy.owner == "dead" and copy.saved_at is not None]
    newest = max(usable, key=lambda copy: copy.saved_at, default=None)  # type: ignore[arg-type, return-value]
    if path.is_dir() and is_complete(path, rules):
        current = Copy(path, saved_at(path), "path")
        if newest is not None and (current.saved_at is None or newest.saved_at > current.saved_at):  # type: ignore[operator]
            return Decision(str(newest.path), warning=_newer_warning(path, newest, current))
        return Decision(str(path))
    if path.exists() or path.is_symlink():
        return Decision(str(path))
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
            f" An interrupted save left only incomplete folders beside it ({listed}: no manifest, so not every file "
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


def remove_folder(folder: str | os.PathLike) -> None:
    """Delete an old checkpoint, its manifest first (so that a crash midway leaves it incomplete, not wrong).

    Best effort: what cannot be deleted stays, as a leftover the next save of another process removes.
    """
    folder = Path(folder)
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


def exchange(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Swap the names of two existing entries in one atomic step; ``False`` where the system cannot.

    Linux's ``renameat2(RENAME_EXCHANGE)``; ``False`` on other systems, old kernels, file systems without
    it (NFS, ...), or with :data:`USE_RENAME_EXCHANGE` switched off. Other failures raise ``OSError``.
    """
    if not USE_RENAME_EXCHANGE or sys.platform != "linux":
        return False
    libc = _libc()
    if libc is None:
        return False
    source, target = os.fsencode(first), os.fsencode(second)
    if libc.renameat2(_AT_FDCWD, source, _AT_FDCWD, target, _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def commit(staging: str | os.PathLike, path: str | os.PathLike, rules: Rules = DEFAULT_RULES) -> None:
    """Put the complete folder ``staging`` (its manifest written) at ``path``; the old checkpoint is deleted.

    At every moment a complete checkpoint exists: at ``path``, or at ``staging`` with the old one at its
    ``previous`` name, which :func:`locate` finds. With an atomic exchange the old checkpoint takes the
    staging folder's name, and ``path`` always holds one of the two. Call it on one process (global rank 0).
    """
    staging, path = Path(staging), Path(path)
    previous = None
    if not (path.exists() or path.is_symlink()):
        os.replace(staging, path)
        faults.checkpoint_step(f"{rules.name}-renamed")
    elif exchange(staging, path):
        previous = staging
        faults.checkpoint_step(f"{rules.name}-exchanged")
    else:
        previous = leftovers.owned_path(path, PREVIOUS_KIND)
        os.replace(path, previous)
        faults.checkpoint_step(f"{rules.name}-previous-kept")
        try:
            os.replace(staging, path)
        except OSError:
            os.replace(previous, path)  # the old checkpoint goes back where it was
            raise
        faults.checkpoint_step(f"{rules.name}-renamed")
    fsync_directory(path.parent)
    if previous is not None:
        remove_folder(previous)
        faults.checkpoint_step(f"{rules.name}-previous-removed")


def recover(path: str | os.PathLike, rules: Rules = DEFAULT_RULES) -> list[Path]:
    """Before a save of ``path``: move the newest complete copy into place, then remove dead saves' leftovers.

    Returns what was removed. Folders of live processes and of other hosts, and legacy folders, are never
    touched. Call it on one process (global rank 0).
    """
    path = Path(path)
    decision = locate(path, rules)
    if decision.source is not None and Path(decision.source) != path:
        commit(Path(decision.source), path, rules)
    return leftovers.remove_leftovers(path)


# -- a save, start to end ------------------------------------------------------------------------------


def create_staging(path: str | os.PathLike, rules: Rules = DEFAULT_RULES) -> Path:
    """Before a save of ``path``, on global rank 0: :func:`recover`, then make the staging folder; return it.

    The folder is ``.NAME.partial.HOST.PID.TOKEN`` beside ``path`` (whose parent folders are created);
    broadcast its name to the other ranks. Raises ``OSError`` (explain it with
    :func:`fabric_core.io.errors.explain_save_error`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path, rules)
    staging = leftovers.owned_path(path, STAGING_KIND)
    staging.mkdir()
    faults.checkpoint_step(f"{rules.name}-staging-created")
    return staging


def create_staging_for_all(
    path: str | os.PathLike, rules: Rules, is_global_zero: bool, broadcast: Callable[[Any], Any]
) -> Path:
    """:func:`create_staging` on global rank 0, its folder sent to every rank (``broadcast`` is the strategy's).

    A failure is explained (:func:`fabric_core.io.errors.explain_save_error`) and raised on every rank.
    """
    from fabric_core.io import errors

    reply: Any = None
    if is_global_zero:
        try:
            reply = str(create_staging(path, rules))
        except OSError as err:
            reply = errors.explain_save_error(err, path)
    reply = broadcast(reply)
    if isinstance(reply, BaseException):
        raise reply from None
    return Path(reply)


def locate_for_all(
    path: str | os.PathLike, rules: Rules, is_global_zero: bool, broadcast: Callable[[Any], Any]
) -> Decision:
    """:func:`locate` on global rank 0 (whether a save's owner still runs is known on its host only), for every rank.

    Raises ``FileNotFoundError`` on every rank when there is nothing to load; the caller shows
    :attr:`Decision.warning`, if any, pointing at the user's line.
    """
    decision = locate(path, rules) if is_global_zero else None
    decision = broadcast(decision)
    if decision.error is not None:
        raise FileNotFoundError(decision.error)
    return decision


def write_manifest_and_commit(
    staging: str | os.PathLike,
    path: str | os.PathLike,
    files: Mapping[str, Mapping[str, Any]],
    rules: Rules = DEFAULT_RULES,
    **extra: Any,
) -> None:
    """After every rank has written its files into ``staging``, on global rank 0: commit them to ``path``.

    ``files`` maps each file's name relative to ``staging`` to its
    :func:`fabric_core.io.integrity.checksum_file`; ``extra`` (e.g. ``world_size=8``) goes into the
    manifest beside ``saved_at``, the time of the save that :func:`locate` orders copies by. When it raises,
    the previous checkpoint is in place (or found by :func:`locate`): remove ``staging`` with
    :func:`remove_folder`.
    """
    staging = Path(staging)
    integrity.write_manifest(staging, files, saved_at=time.time(), **extra)
    faults.checkpoint_step(f"{rules.name}-manifest-written")
    commit(staging, path, rules)
