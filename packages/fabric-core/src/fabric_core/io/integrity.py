"""Checking that a checkpoint is intact: CRC-32 of every record of a file, a manifest for a folder.

``torch.save`` writes a zip archive and, by default, the CRC-32 of every record in it, so a single-file
checkpoint carries its own checksums. A checkpoint folder (a sharded save) carries a manifest,
:data:`MANIFEST_NAME`, that lists every file with its size and CRC-32. :func:`verify_checkpoint` checks
either and returns the problems it found::

    problems = verify_checkpoint("out/model.ckpt")
    if problems:
        raise CheckpointCorruptError("out/model.ckpt", problems)

Verifying reads every byte once; see docs/reliability.md for its cost per GB.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fabric_core.io import leftovers
from fabric_core.io.durable import fsync_directory

MANIFEST_NAME = "fabric-manifest.json"
MANIFEST_FORMAT = "fabric-checkpoint-manifest"
MANIFEST_VERSION = 1

_CHUNK = 16 * 1024 * 1024


class CheckpointCorruptError(RuntimeError):
    """A checkpoint failed verification; ``problems`` lists what is wrong, one line each, naming the files.

    Raised by ``fabric.load(..., verify=True)`` on every rank, before anything is loaded.
    """

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"Checkpoint '{self.path}' failed verification ({len(self.problems)} problem(s)); it was not loaded:\n"
            f"{listed}\nRestore it from a copy or load an earlier checkpoint."
        )

    def __reduce__(self):
        return type(self), (self.path, self.problems)


def checksum_file(path: str | Path) -> dict[str, Any]:
    """``{"size": bytes, "crc32": "<8 hex digits>"}`` of the file at ``path``, read in large chunks."""
    crc = 0
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return {"size": size, "crc32": f"{crc:08x}"}


def write_manifest(directory: str | Path, files: Mapping[str, Mapping[str, Any]], **extra: Any) -> Path:
    """Write :data:`MANIFEST_NAME` into ``directory`` atomically and durably; return its path.

    ``files`` maps each file's name relative to ``directory`` (``/``-separated) to its
    :func:`checksum_file` result; ``extra`` fields (JSON values) are stored beside them.

    Example::

        write_manifest(folder, {name: checksum_file(folder / name) for name in names}, world_size=8)
    """
    reserved = {"format", "version", "files"} & set(extra)
    if reserved:
        raise ValueError(f"write_manifest(): {sorted(reserved)} are the manifest's own fields; name extras otherwise.")
    directory = Path(directory)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "files": {str(name): dict(entry) for name, entry in files.items()},
        **extra,
    }
    target = directory / MANIFEST_NAME
    tmp = leftovers.owned_path(target, "tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(directory)
    return target


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The manifest in ``directory`` as written by :func:`write_manifest`, or ``None`` when there is none.

    Raises ``ValueError`` naming the file when it exists but is not a readable manifest.
    """
    target = Path(directory) / MANIFEST_NAME
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(text)
    except ValueError as err:
        raise ValueError(f"Checkpoint manifest '{target}' is not valid JSON ({err}); it is damaged.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"Checkpoint manifest '{target}' has no 'files' table; it is damaged or not a manifest.")
    return manifest


def verify_checkpoint(path: str | Path) -> list[str]:
    """The problems found in the checkpoint at ``path`` (a file or a folder); an empty list when it is intact.

    A file: every record of the ``torch.save`` zip archive is read and checked against its CRC-32. A file in
    torch's legacy (non-zip) format, or written with CRC-32 switched off, cannot be verified, which is a
    problem too. A folder: every file its manifest lists must exist with the listed size and CRC-32; a folder
    without a manifest is a problem. Each problem is one line naming the file.
    """
    path = Path(path)
    if path.is_dir():
        return _verify_folder(path)
    if not path.exists():
        return [f"'{path}' does not exist."]
    return _verify_file(path)


def _verify_file(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        archive = zipfile.ZipFile(path)
    except OSError as err:
        return [f"'{path}' cannot be read: {err.strerror or err}."]
    except (zipfile.BadZipFile, EOFError, ValueError):
        if magic.startswith(b"PK"):
            return [f"'{path}' is truncated or damaged: its zip index cannot be read."]
        return [
            f"'{path}' is not a zip archive (torch's legacy format, or not a torch.save file), so it cannot be "
            "verified; save it again with a current torch.save to get checksums."
        ]
    with archive:
        records = archive.infolist()
        if not records:
            return [f"'{path}' is an empty zip archive, not a torch.save checkpoint."]
        with_data = [info for info in records if info.file_size > 0]
        if with_data and all(info.CRC == 0 for info in with_data):
            return [
                f"'{path}' was written with CRC-32 switched off (torch.serialization.set_crc32_options(False)), so "
                "its data cannot be verified; save it again with CRC-32 on (the default) to make it verifiable."
            ]
        problems = []
        for info in records:
            problem = _check_record(archive, info)
            if problem is not None:
                problems.append(f"'{path}': {problem}")
        return problems


def _check_record(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    try:
        with archive.open(info) as record:
            while record.read(_CHUNK):
                pass
    except zipfile.BadZipFile as err:
        if "CRC" in str(err):
            return f"record '{info.filename}' fails its CRC-32 check (its bytes changed after it was written)."
        return f"record '{info.filename}' is damaged ({err})."
    except (EOFError, OSError, ValueError, zlib.error) as err:
        return f"record '{info.filename}' is truncated or unreadable ({type(err).__name__}: {err})."
    return None


def _verify_folder(directory: Path) -> list[str]:
    try:
        manifest = read_manifest(directory)
    except ValueError as err:
        return [str(err)]
    except OSError as err:
        return [f"'{directory / MANIFEST_NAME}' cannot be read: {err.strerror or err}."]
    if manifest is None:
        return [
            f"'{directory}' has no {MANIFEST_NAME}, so it cannot be verified (saved by a version that wrote no "
            "manifest, or not a complete checkpoint)."
        ]
    problems = []
    for name, expected in sorted(manifest["files"].items()):
        file = directory / name
        if not file.is_file():
            problems.append(f"'{file}' is missing (listed in {MANIFEST_NAME}).")
            continue
        try:
            actual = checksum_file(file)
        except OSError as err:
            problems.append(f"'{file}' cannot be read: {err.strerror or err}.")
            continue
        if actual["size"] != expected.get("size"):
            problems.append(f"'{file}' has {actual['size']} bytes, but {expected.get('size')} were written.")
        elif actual["crc32"] != expected.get("crc32"):
            problems.append(
                f"'{file}' fails its CRC-32 check ({actual['crc32']}, written as {expected.get('crc32')}): its bytes "
                "changed after it was written."
            )
    return problems
