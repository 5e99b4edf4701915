"""Sharded checkpoint errors a user can act on: checked before ``torch.distributed.checkpoint`` reads, and
translated when it fails.

DCP reports a failure as a ``CheckpointException`` holding every rank's exception and traceback, printed
one after another (11 to 49 lines), and some of them name a file that does not exist or nothing at all. Here
the common problems are found before DCP starts — a shard the ``.metadata`` lists is missing or shorter than
the data it must hold, the ``.metadata`` cannot be read, ``meta.pt`` is missing, a tensor's shape differs from
the model's — and what still comes out of DCP becomes one error naming the checkpoint, the cause in one line
and the fix::

    metadata = read_metadata(path)
    check_files(path, metadata)
    check_shapes(path, metadata, target)
    try:
        dcp.load(target, checkpoint_id=path)
    except BaseException as err:  # CheckpointException derives from BaseException
        raise explain_load_failure(err, path) from None
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

from fabric_core.io import errors, integrity
from fabric_core.io.integrity import CheckpointCorruptError
from fabric_core.strategies import CheckpointKeyError
from fabric_fsdp.commit import DCP_METADATA, META_FILE

#: At most this many shape mismatches are listed in one error.
_SHOWN = 6


def _failures(err: BaseException) -> list[tuple[int | None, BaseException]]:
    """Each rank's exception in a ``CheckpointException`` (ordered by rank), or ``err`` alone."""
    from torch.distributed.checkpoint.api import CheckpointException

    if isinstance(err, CheckpointException) and err.failures:
        return [(rank, failure[0]) for rank, failure in sorted(err.failures.items())]
    return [(None, err)]


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _on_rank(rank: int | None) -> str:
    return "" if rank is None else f" on rank {rank}"


def explain_save_failure(err: BaseException, path: str | Path) -> BaseException:
    """The one error to raise when saving the sharded checkpoint ``path`` failed with ``err``.

    OS errors of any rank (no space left, read-only, permission) become
    :func:`fabric_core.io.errors.explain_save_error`'s typed error; other failures a ``RuntimeError`` naming
    the rank. The ranks' exceptions stay on the result's ``rank_failures`` attribute. An error that is
    neither a ``CheckpointException`` nor explainable is returned unchanged.
    """
    failures = _failures(err)
    rank, cause = next(((r, e) for r, e in failures if isinstance(e, OSError)), failures[0])
    explained = errors.explain_save_error(cause, path)
    if explained is cause:
        if cause is err:
            return err
        explained = RuntimeError(
            f"Cannot save checkpoint '{path}': writing the shards failed{_on_rank(rank)} "
            f"({type(cause).__name__}: {_first_line(cause)}). Nothing of this save was kept; fix the cause and save "
            "again."
        )
    explained.rank_failures = dict(failures)  # type: ignore[attr-defined]
    return explained


def explain_load_failure(err: BaseException, path: str | Path) -> BaseException:
    """The one error to raise when ``dcp.load`` of the sharded checkpoint ``path`` failed with ``err``."""
    path = Path(path)
    failures = _failures(err)
    rank, cause = next(((r, e) for r, e in failures if isinstance(e, OSError)), failures[0])
    if isinstance(cause, OSError):
        missing = Path(str(cause.filename)) if cause.errno == errno.ENOENT and cause.filename else None
        if missing is not None and missing.parent == path:
            explained: BaseException = CheckpointCorruptError(path, [f"{missing.name} is missing"])
        else:
            explained = errors.explain_load_error(cause, path)
    else:
        key = re.search(r"Missing key in checkpoint state_dict: (\S+?)\.?$", _first_line(cause))
        if key is not None:
            explained = CheckpointKeyError(
                f"The state to restore has {key.group(1)} but checkpoint '{path}' holds no such entry. Restore a "
                "model and optimizer like the ones saved, or load with strict=False to skip what is missing."
            )
        elif cause is err and not isinstance(err, Exception):
            return err  # KeyboardInterrupt, SystemExit: not a failure of the checkpoint
        else:
            explained = RuntimeError(
                f"Cannot load checkpoint '{path}': reading the shards failed{_on_rank(rank)} ({type(cause).__name__}: "
                f"{_first_line(cause)}). If its files were changed or damaged, `fabric checkpoint verify {path}` says "
                "which; otherwise load an earlier checkpoint."
            )
    explained.rank_failures = dict(failures)  # type: ignore[attr-defined]
    return explained


# -- before DCP reads ----------------------------------------------------------------------------------


def read_metadata(path: Path) -> Any:
    """The DCP ``Metadata`` of the checkpoint ``path``, or a clear error when it cannot be read."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        metadata = FileSystemReader(path).read_metadata()
    except OSError as err:
        raise errors.explain_load_error(err, path) from None
    except Exception as err:
        raise CheckpointCorruptError(
            path, [f"the {DCP_METADATA} file is corrupt ({type(err).__name__}: {_first_line(err)})"]
        ) from None
    if not isinstance(getattr(metadata, "storage_data", None), dict) or not isinstance(
        getattr(metadata, "state_dict_metadata", None), dict
    ):
        raise CheckpointCorruptError(path, [f"the {DCP_METADATA} file is corrupt (it holds no table of shards)"])
    return metadata


def _shard_order(name: str) -> tuple:
    """``__10_0.distcp`` after ``__9_0.distcp``: numbers compared as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def check_files(path: Path, metadata: Any, require_meta: bool = True) -> None:
    """Every shard the metadata lists exists and holds its data, and ``meta.pt`` is there; else one error.

    Sizes come from the manifest when there is one (exact), else from where the metadata says each shard's
    last record ends (a lower bound). ``require_meta=False`` accepts a folder without ``meta.pt`` unless
    its manifest lists one (a checkpoint ``torch.distributed.checkpoint.save`` wrote, not ``fabric.save``).
    """
    needed: dict[str, int] = {}
    for info in metadata.storage_data.values():
        end = int(info.offset) + int(info.length)
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), end)
    try:
        manifest = integrity.read_manifest(path) or {"files": {}}
    except (OSError, ValueError):
        manifest = {"files": {}}
    shards = sorted(needed, key=_shard_order)
    problems = []
    for index, name in enumerate(shards, start=1):
        listed = manifest["files"].get(name, {}).get("size")
        try:
            size = (path / name).stat().st_size
        except FileNotFoundError:
            problems.append(f"missing shard {name} (shard {index} of {len(shards)})")
            continue
        except OSError as err:
            raise errors.explain_load_error(err, path) from None
        expected = listed if isinstance(listed, int) else needed[name]
        if size < expected:
            problems.append(f"shard {name} is truncated: {size} of {expected} bytes")
        elif isinstance(listed, int) and size != listed:
            problems.append(f"shard {name} has {size} bytes, but {listed} were written")
    if (require_meta or META_FILE in manifest["files"]) and not (path / META_FILE).is_file():
        problems.append(
            f"{META_FILE} is missing: the save was interrupted or the folder was not written by fabric.save"
        )
    if problems:
        raise CheckpointCorruptError(path, problems)


def _lookup(state: Any, keys: tuple) -> Any:
    for key in keys:
        in_dict = isinstance(state, dict) and key in state
        in_list = isinstance(state, (list, tuple)) and isinstance(key, int) and 0 <= key < len(state)
        if not (in_dict or in_list):
            return None
        state = state[key]
    return state


def check_shapes(path: Path, metadata: Any, target: dict[str, Any]) -> None:
    """Every tensor of ``target`` has the shape the checkpoint saved; else a ``RuntimeError`` naming the keys."""
    from torch import Tensor
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    planner_data = metadata.planner_data or {}
    mismatches = []
    for key, stored in metadata.state_dict_metadata.items():
        if not isinstance(stored, TensorStorageMetadata):
            continue
        keys = planner_data.get(key)
        tensor = _lookup(target, tuple(keys)) if keys else None
        if isinstance(tensor, Tensor) and tuple(tensor.shape) != tuple(stored.size):
            mismatches.append(f"shape of key {key}: saved {tuple(stored.size)} vs expected {tuple(tensor.shape)}")
    if not mismatches:
        return
    shown = "; ".join(mismatches[:_SHOWN])
    if len(mismatches) > _SHOWN:
        shown += f"; and {len(mismatches) - _SHOWN} more"
    raise RuntimeError(
        f"Cannot load checkpoint '{path}' into this state: {shown}. The checkpoint was saved from a model of another "
        "shape: create the model (and its optimizer) as it was when saved, or load a checkpoint of this model."
    )
