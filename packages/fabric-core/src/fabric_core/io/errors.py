"""Checkpoint errors a user can act on: the checkpoint path, the cause in one line, and the fix.

A save or load that fails deep inside (``torch.save``'s C++ writer, ``os.replace`` of a temporary file,
``mkdir``) raises an error that names a temporary file or nothing at all. Callers catch it and raise the
explained version instead::

    try:
        atomic_torch_save(state, path)
    except OSError as err:
        raise explain_save_error(err, path) from err

OS errors keep their type and ``errno`` (``OSError(errno.ENOSPC, ...)``, ``PermissionError``,
``NotADirectoryError``, ...), so ``except OSError`` and errno checks keep working. An error these
functions do not know is returned unchanged.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from pathlib import Path

_ENFORCE_MARKERS = ("inline_container.cc", "unexpected pos", "PytorchStreamWriter failed", "enforce fail")


def explain_save_error(err: BaseException, path: str | Path, *, needed: int | None = None) -> BaseException:
    """The error to raise for ``err``, raised while saving the checkpoint at ``path``.

    Args:
        err: what the save raised.
        path: the checkpoint (a file or a folder), not a temporary name.
        needed: about how many bytes the checkpoint takes, when known; quoted with a full disk.

    Returns a new exception (OS errors keep their ``errno``), or ``err`` itself when it is not one these
    explain. torch's ``[enforce fail at inline_container.cc ...] unexpected pos`` becomes the OS error that
    caused it when one is chained to it (``__context__``/``__cause__``).
    """
    if getattr(err, "checkpoint_path", None) is not None:
        return err  # already explained
    path = Path(path)
    os_error = _os_error_in(err)
    if os_error is None:
        if isinstance(err, RuntimeError) and any(marker in str(err) for marker in _ENFORCE_MARKERS):
            return _tag(
                RuntimeError(
                    f"Cannot save checkpoint '{path}': writing it failed ({_first_line(err)}); the disk is probably "
                    f"full or failing ({_free_space(path)}). Check the disk and free space, then save again."
                ),
                path,
            )
        if isinstance(err, FileExistsError):  # mkdir of a parent: a file stands where a folder must be
            os_error = err
        else:
            return err
    code = os_error.errno
    directory = path.parent
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        cause = "no space left on the device" if code == errno.ENOSPC else "the disk quota is exceeded"
        detail = _free_space(path)
        if needed is not None:
            detail += f", about {_size(needed)} needed"
        message = (
            f"Cannot save checkpoint '{path}': {cause} ({detail}). Free space there (old checkpoints, "
            "leftovers) or save to another disk; nothing partial was left behind."
        )
    elif code == errno.EROFS:
        message = (
            f"Cannot save checkpoint '{path}': '{directory}' is on a read-only file system. Save to a writable "
            "location, or remount that file system read-write."
        )
    elif code in (errno.EACCES, errno.EPERM):
        message = (
            f"Cannot save checkpoint '{path}': permission denied writing in '{_existing_ancestor(directory)}'"
            f"{_as_user()}. Make that folder writable for this user (chmod u+w, and u+x on the folders above it) "
            "or save elsewhere."
        )
    elif code == errno.ENOTDIR or isinstance(os_error, FileExistsError):
        blocker = _file_in_the_way(path)
        if blocker is None and isinstance(os_error, FileExistsError):
            return err
        code = errno.ENOTDIR
        message = (
            f"Cannot save checkpoint '{path}': '{blocker or directory}' is a file, not a directory. Remove or "
            "rename that file, or save to another path."
        )
    elif code == errno.EISDIR:
        message = (
            f"Cannot save checkpoint '{path}': a directory is at that path (a sharded checkpoint?), and a single "
            "file cannot replace it. Remove that directory or save to another path."
        )
    elif code == errno.ENAMETOOLONG:
        message = (
            f"Cannot save checkpoint '{path}': the file name is too long for the file system (a save also needs "
            "room for a temporary name of about 45 more characters). Choose a shorter name."
        )
    else:
        message = (
            f"Cannot save checkpoint '{path}': {os_error.strerror or _first_line(os_error)}"
            f"{_about(os_error, path)}. Check the disk and the path, then save again."
        )
    return _tag(OSError(code, message), path)


def explain_load_error(err: BaseException, path: str | Path) -> BaseException:
    """The error to raise for ``err``, raised while loading the checkpoint at ``path``.

    Explains OS errors (not found, permission denied, a directory or a file where the other was
    expected) and keeps their type and ``errno``; anything else is returned unchanged.
    """
    if getattr(err, "checkpoint_path", None) is not None or not isinstance(err, OSError) or err.errno is None:
        return err
    path = Path(path)
    code = err.errno
    if code == errno.ENOENT:
        message = f"Checkpoint not found: '{path}'"
        if str(path.parent) and not _exists(path.parent):
            message += f" (the folder '{path.parent}' does not exist)"
        previous = path.with_name(f".{path.name}.previous")
        if _exists(previous):
            message += (
                f". The version it replaced is at '{previous}' (a save was interrupted): load that one, or "
                "copy it back to the checkpoint's name"
            )
        else:
            message += ". Check the path, or save a checkpoint there first"
        if err.filename and Path(str(err.filename)) != path:
            message += f" (missing: '{err.filename}')"
        message += "."
    elif code in (errno.EACCES, errno.EPERM):
        denied = err.filename or path
        message = (
            f"Cannot load checkpoint '{path}': permission denied reading '{denied}'{_as_user()}. Make it readable "
            "for this user (e.g. chmod u+r, and u+x on its folders) or load it as its owner."
        )
    elif code == errno.ENOTDIR:
        blocker = _file_in_the_way(path)
        message = (
            f"Cannot load checkpoint '{path}': '{blocker or err.filename or path.parent}' is a file, not a "
            "directory. Check the path."
        )
    elif code == errno.EISDIR:
        message = (
            f"Cannot load checkpoint '{path}': it is a directory, where a single file was expected. A sharded "
            "checkpoint needs the strategy that wrote it (e.g. strategy='fsdp'); otherwise check the path."
        )
    else:
        message = (
            f"Cannot load checkpoint '{path}': {err.strerror or _first_line(err)}{_about(err, path)}. Check "
            "the disk and the path, then load again."
        )
    return _tag(OSError(code, message), path)


def _tag(error: BaseException, path: Path) -> BaseException:
    error.checkpoint_path = str(path)
    return error


def _os_error_in(err: BaseException) -> OSError | None:
    """``err`` if it is an OS error with an errno, else the first such error chained to it."""
    seen = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None and not isinstance(current, FileExistsError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _about(err: OSError, path: Path) -> str:
    return f" ('{err.filename}')" if err.filename and Path(str(err.filename)) != path else ""


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; one this user may not even look at counts as existing."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _existing_ancestor(directory: Path) -> Path:
    current = directory if str(directory) else Path(".")
    while not _exists(current) and current != current.parent:
        current = current.parent
    return current


def _file_in_the_way(path: Path) -> Path | None:
    """The first component of ``path``'s folders that exists but is not a directory."""
    for ancestor in reversed(path.parents):
        try:
            mode = os.stat(ancestor).st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
            return ancestor
    return None


def _free_space(path: Path) -> str:
    where = _existing_ancestor(path.parent)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return f"free space in '{where}' unknown"
    return f"{_size(free)} free in '{where}'"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _as_user() -> str:
    if not hasattr(os, "geteuid"):
        return ""
    try:
        import pwd

        return f" (as user '{pwd.getpwuid(os.geteuid()).pw_name}')"
    except (ImportError, KeyError):
        return f" (as uid {os.geteuid()})"


_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from checkpoint, "
    r"the shape in current model is torch\.Size\(\[([^\]]*)\]\)"
)
_KEY_LIST = re.compile(r"(Missing|Unexpected) key\(s\) in state_dict: ((?:\"[^\"]*\"(?:, )?)+)")


def explain_state_mismatch(err: BaseException, path: str | Path, key: str | None = None) -> BaseException:
    """The error to raise when the state in checkpoint ``path`` (under ``key``) does not fit its target.

    For a module's ``load_state_dict`` error: one line per mismatched key (``shape of key 'fc.weight':
    saved (3, 4) vs expected (2, 4)``), then the missing and unexpected keys, then the fix, as a
    ``RuntimeError``. For an optimizer's ``ValueError``: the same error naming the checkpoint. Anything
    else is returned unchanged.
    """
    where = f"Checkpoint '{path}'" + (f" (key {key!r})" if key is not None else "")
    text = str(err)
    if isinstance(err, RuntimeError) and "loading state_dict" in text:
        lines = [
            f"shape of key '{name}': saved {_shape(saved)} vs expected {_shape(expected)}"
            for name, saved, expected in _SIZE_MISMATCH.findall(text)
        ]
        for kind, keys in _KEY_LIST.findall(text):
            names = [name for name in keys.split('"') if name.strip(", ")]
            lines.append(f"{kind} key(s): {', '.join(names)}")
        if not lines:
            lines = [_first_line(err)]
        fix = "Load it into a model built with the same configuration as the one that saved it"
        if any(line.startswith(("Missing", "Unexpected")) for line in lines):
            fix += ", or pass strict=False to skip missing and unexpected keys"
        listed = "\n".join(f"  {line}" for line in lines)
        return RuntimeError(f"{where} does not fit the model it is loaded into:\n{listed}\n{fix}.")
    if isinstance(err, ValueError) and "state dict" in text:
        return ValueError(
            f"{where} does not fit the optimizer it is loaded into: {_first_line(err)}. Create the optimizer over "
            "the same parameters and parameter groups as the one that saved it."
        )
    return err


def _shape(dims: str) -> str:
    parts = [part.strip() for part in dims.split(",") if part.strip()]
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
