"""Reading and writing checkpoints on local disks and, through fsspec, on remote filesystems (S3, GCS, ...).

fsspec is an optional dependency (``pip install "fabric-core[cloud]"``; torch itself usually brings
it). Local paths never need it: :func:`load` and :func:`atomic_save` handle them with ``torch.load``
and fabric-core's atomic writer. :func:`get_filesystem` returns an fsspec filesystem, so it needs
fsspec for every path, local ones included, as in Lightning.

Lightning's private spellings ``_load`` and ``_atomic_save`` are kept as aliases for ported code.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "fabric-core[cloud]"'
# Object stores upload a whole buffer faster with ``pipe`` (parallel multipart uploads) than through a
# file object; Azure's adlfs stages blocks one by one, so it is left out, as Lightning does.
_OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs"})


class MissingFsspecError(ModuleNotFoundError):
    """fsspec is needed for this path but is not installed; the message gives the command that installs it."""


def _fsspec(purpose: str) -> Any:
    try:
        import fsspec
        import fsspec.core
    except ImportError as err:
        raise MissingFsspecError(
            f"{purpose} needs fsspec, which is not installed: {INSTALL_HINT} (or pip install fsspec, plus the "
            "package for your storage, e.g. s3fs or gcsfs).",
            name="fsspec",
        ) from err
    return fsspec


def _protocol(path: str | Path) -> str:
    # fsspec's reading without fsspec: "s3" for s3://b/k, the first one of a chained URL
    # (simplecache::s3://...), "file" for a plain path
    match = re.match(r"^(.*?)(::|://)", str(path))
    return match.group(1) if match else "file"


def is_local_path(path: str | Path) -> bool:
    """Whether ``path`` is on the local filesystem (a plain path or a ``file://`` URL).

    Example::

        is_local_path("checkpoints/last.ckpt"), is_local_path("s3://bucket/last.ckpt")  # (True, False)
    """
    return _protocol(path) == "file"


def _local(path: str | Path) -> Path:
    text = str(path)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def get_filesystem(path: str | Path, **kwargs: Any) -> AbstractFileSystem:
    """The fsspec filesystem that serves ``path``; ``kwargs`` are its storage options (credentials, ...).

    Needs fsspec for every path, a local one included (it returns fsspec's ``LocalFileSystem``).

    Example::

        fs = get_filesystem("s3://bucket/run-1", anon=False)
        fs.ls("s3://bucket/run-1")
    """
    fsspec = _fsspec(f"get_filesystem({str(path)!r})")
    filesystem, _ = fsspec.core.url_to_fs(str(path), **kwargs)
    return filesystem


def load(path_or_url: IO | str | Path, map_location: Any = None, weights_only: bool | None = None) -> Any:
    """``torch.load`` from a file object, a local path, an ``http(s)`` URL or an fsspec URL (``s3://...``).

    ``weights_only=None`` is torch's default, except for an ``http(s)`` URL, where it is ``False``, as in
    Lightning: load only files you trust. Only fsspec URLs need fsspec.

    Example::

        state = load("s3://bucket/run-1/last.ckpt", map_location="cpu", weights_only=True)
    """
    if not isinstance(path_or_url, (str, Path)):
        return torch.load(path_or_url, map_location=map_location, weights_only=weights_only)
    text = str(path_or_url)
    if text.startswith("http"):
        if weights_only is None:
            log.debug("Loading %s with weights_only=False; pass weights_only=True for a file you do not trust.", text)
            weights_only = False
        return torch.hub.load_state_dict_from_url(text, map_location=map_location, weights_only=weights_only)
    if is_local_path(text):
        return torch.load(_local(text), map_location=map_location, weights_only=weights_only)
    filesystem = get_filesystem(text)
    with filesystem.open(text, "rb") as f:
        return torch.load(f, map_location=map_location, weights_only=weights_only)


def atomic_save(checkpoint: Any, filepath: str | Path) -> None:
    """``torch.save`` so that a crash mid-write never leaves a partial file at ``filepath``.

    A local path is written to a temporary file in the same directory, flushed to the disk and
    renamed over the target (no fsspec needed). A remote path is serialised in memory first and
    written in one fsspec transaction.

    Example::

        atomic_save({"model": model.state_dict()}, "s3://bucket/run-1/last.ckpt")
    """
    if is_local_path(filepath):
        from fabric_core.io.torch_io import atomic_torch_save

        atomic_torch_save(checkpoint, _local(filepath), fsync=True)
        return
    fsspec = _fsspec(f"atomic_save(..., {str(filepath)!r})")
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    filesystem, urlpath = fsspec.core.url_to_fs(str(filepath))
    log.debug("Saving %d bytes to %s", buffer.tell(), filepath)
    with filesystem.transaction:
        if _protocol(filepath) in _OBJECT_STORE_PROTOCOLS:
            filesystem.pipe(urlpath, buffer.getvalue())
        else:
            with filesystem.open(urlpath, "wb") as f:
                f.write(buffer.getvalue())


# Lightning's (private) names, which ported code imports.
_load = load
_atomic_save = atomic_save
