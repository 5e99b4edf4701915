"""Checkpoints of sharded models: a ``torch.distributed.checkpoint`` directory, or one full file.

A **sharded** checkpoint is a directory::

    checkpoint/
        .metadata           written by torch.distributed.checkpoint (DCP): what is where
        __0_0.distcp ...    each rank's shards of the models and optimizers
        meta.pt             everything else in the state (step, epoch, scheduler...), from rank 0
        fabric-manifest.json  every file's size and CRC-32, written last: the commit record

Every rank writes its own shards, so nothing is gathered; loading reads the shards each rank needs
for the *current* layout, so a checkpoint written by 8 processes loads into 4, or into 1 (resharding).
The directory is written under a temporary name and renamed into place once complete; a crash at any
step leaves a complete checkpoint that a load finds (:mod:`fabric_core.io.commit`; the sharded steps and
rules are in :mod:`fabric_fsdp.commit`). Loading checks the files and shapes before DCP reads, so a
damaged checkpoint is one clear error (:mod:`fabric_fsdp.checkpoint_errors`).

A **full** checkpoint is one ``torch.save`` file, the same nested dict a single-device run writes:
parameters are gathered one at a time and moved to rank 0's CPU memory, so the whole model is never
held twice on one device. Models and optimizers are keyed by parameter name (FQN) in both kinds.

:func:`consolidate_checkpoint` turns a sharded checkpoint into the full file; ``fabric consolidate`` calls it
for a directory with a ``.metadata`` file (:mod:`fabric_fsdp.consolidator`).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import Module
from torch.optim import Optimizer

from fabric_core.io import commit as folder_commit
from fabric_core.io import errors, faults, integrity
from fabric_core.io.checkpoint_io import CheckpointIO, load_with
from fabric_core.io.integrity import CheckpointCorruptError
from fabric_core.io.torch_io import TorchCheckpointIO, atomic_torch_save
from fabric_core.strategies.strategy import validate_keys_for_loading
from fabric_fsdp import checkpoint_errors, commit
from fabric_fsdp.commit import DCP_METADATA, META_FILE, SHARDED

Filter = dict[str, Callable[[str, Any], bool]]


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sharded (DCP) checkpoint directory."""
    path = Path(path)
    return path.is_dir() and (path / DCP_METADATA).is_file()


# -- the state to save or restore ---------------------------------------------------------------------


@dataclass
class _Parts:
    modules: dict[str, Module] = field(default_factory=dict)
    optimizers: dict[str, Optimizer] = field(default_factory=dict)
    others: dict[str, Any] = field(default_factory=dict)


def _split(state: dict[str, Any]) -> _Parts:
    parts = _Parts()
    for key, obj in state.items():
        if isinstance(obj, Module):
            parts.modules[key] = obj
        elif isinstance(obj, Optimizer):
            parts.optimizers[key] = obj
        else:
            parts.others[key] = obj
    return parts


def _is_stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _filtered(key: str, value: Any, filter: Filter | None) -> Any:
    if filter and key in filter and isinstance(value, dict):
        keep = filter[key]
        return {k: v for k, v in value.items() if keep(k, v)}
    return value


def _without_emptied(entries: dict[str, Any], filter: Filter | None) -> dict[str, Any]:
    """``entries`` less those their filter left empty: such an entry is left out of the checkpoint, as in Lightning."""
    if not filter:
        return entries
    return {key: value for key, value in entries.items() if not (key in filter and value == {})}


def _owner(key: str, optimizer: Optimizer, modules: Iterable[Module]) -> Module:
    """The model whose parameters ``optimizer`` trains (state dicts name the parameters by it)."""
    wanted = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for module in modules:
        if wanted <= {id(p) for p in module.parameters()}:
            return module
    raise ValueError(
        f"The optimizer under key {key!r} trains parameters of no model set up by this strategy or given in the same "
        "state, and a sharded optimizer's state is keyed by its model's parameter names. Set the model up with "
        "fabric.setup and pass it in the same call, e.g. fabric.save(path, {'model': model, 'optimizer': optimizer})."
    )


def _options(full: bool, strict: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # cpu_offload with full_state_dict: gathered one parameter at a time into rank 0's CPU memory only.
    return StateDictOptions(full_state_dict=full, cpu_offload=full, strict=strict)


def model_state(module: Module, full: bool) -> dict[str, Any]:
    """The model's state dict: its own shards (DTensors), or, with ``full``, whole tensors on rank 0's CPU."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options(full))


def optimizer_state(module: Module, optimizer: Optimizer, full: bool) -> dict[str, Any]:
    """The optimizer's state dict keyed by parameter name (sharded, or full on rank 0 with ``full``)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    if not optimizer.state:
        # torch would take a zero step to create the state (counting it in Adam's step): save what is there.
        return {"state": {}, "param_groups": _named_groups(module, optimizer)}
    return get_optimizer_state_dict(module, optimizer, options=_options(full))


def _named_groups(module: Module, optimizer: Optimizer) -> list[dict[str, Any]]:
    names = {id(p): name for name, p in module.named_parameters()}
    return [
        {**{k: v for k, v in group.items() if k != "params"}, "params": [names[id(p)] for p in group["params"]]}
        for group in optimizer.param_groups
    ]


def _load_hyperparameters(optimizer: Optimizer, groups: list[dict[str, Any]], path: Path) -> None:
    """Restore an optimizer saved before its first step: hyperparameters only, and no state."""
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(
            f"Checkpoint '{path}' has {len(groups)} optimizer parameter group(s), the optimizer has "
            f"{len(optimizer.param_groups)}. Create the optimizer with the same groups as the one saved."
        )
    for group, saved in zip(optimizer.param_groups, groups):
        group.update({k: v for k, v in saved.items() if k != "params"})
    optimizer.state.clear()


def _named_state(saved: dict[str, Any], module: Module, optimizer: Optimizer) -> dict[str, Any]:
    """An optimizer state dict keyed by parameter names (one saved by ``optimizer.state_dict()`` is keyed by
    position): the form ``set_optimizer_state_dict`` expects."""
    groups = saved.get("param_groups", [])
    if not any(isinstance(i, int) for group in groups for i in group.get("params", [])):
        return saved
    names = {id(p): name for name, p in module.named_parameters()}
    position_to_name = {}
    for saved_group, group in zip(groups, optimizer.param_groups):
        for index, param in zip(saved_group["params"], group["params"]):
            position_to_name[index] = names[id(param)]
    return {
        "state": {position_to_name[i]: value for i, value in saved["state"].items()},
        "param_groups": [{**g, "params": [position_to_name[i] for i in g["params"]]} for g in groups],
    }


def _restore_others(others: dict[str, Any], state: dict[str, Any], stored: dict[str, Any]) -> None:
    for key, obj in others.items():
        if key not in stored:
            continue
        value = stored.pop(key)
        if _is_stateful(obj):
            obj.load_state_dict(value)
        else:
            state[key] = value


# -- sharded: a DCP directory --------------------------------------------------------------------------


def save_sharded(
    path: str | os.PathLike,
    state: dict[str, Any],
    filter: Filter | None,
    modules: Iterable[Module],
    is_global_zero: bool,
    broadcast: Callable[[Any], Any],
    all_gather: Callable[[Any], list[Any]],
) -> None:
    """Write ``state`` as a sharded checkpoint directory; every rank calls it.

    ``broadcast(obj)`` sends rank 0's object to every rank; ``all_gather(obj)`` returns every rank's. The
    steps and what a crash at each leaves behind are in :mod:`fabric_fsdp.commit`.
    """
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    parts = _split(state)
    candidates = [*parts.modules.values(), *modules]
    sharded: dict[str, Any] = {}
    for key, module in parts.modules.items():
        sharded[key] = _filtered(key, model_state(module, full=False), filter)
    for key, optimizer in parts.optimizers.items():
        owner = _owner(key, optimizer, candidates)
        sharded[key] = _filtered(key, optimizer_state(owner, optimizer, full=False), filter)
    others = {
        key: _filtered(key, obj.state_dict() if _is_stateful(obj) else obj, filter) for key, obj in parts.others.items()
    }
    sharded, others = _without_emptied(sharded, filter), _without_emptied(others, filter)

    staging = folder_commit.create_staging_for_all(path, SHARDED, is_global_zero, broadcast)
    try:
        dcp.save(sharded, checkpoint_id=staging)  # collective: every rank gets any rank's failure
    except BaseException as err:
        if is_global_zero:
            _discard(staging)
        explained = checkpoint_errors.explain_save_failure(err, path)
        if explained is err:
            raise
        raise explained from None  # the ranks' tracebacks stay on explained.rank_failures
    own_files = _checksum_own_shards(staging)
    faults.checkpoint_step("sharded-shards-written")
    gathered = all_gather(own_files)
    outcome = _finish(staging, path, others, gathered) if is_global_zero else None
    outcome = broadcast(outcome)
    if outcome is not None:
        raise outcome from None


def _checksum_own_shards(staging: Path) -> dict[str, Any] | str:
    """Size and CRC-32 of the shard files this rank wrote (DCP names them ``__RANK_N.distcp``), or the error."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    try:
        return {file.name: integrity.checksum_file(file) for file in sorted(staging.glob(f"__{rank}_*.distcp"))}
    except OSError as err:
        return f"rank {rank} could not read back its shards: {err}"


def _finish(staging: Path, path: Path, others: dict[str, Any], gathered: list[Any]) -> BaseException | None:
    """On rank 0: write meta.pt and the manifest (the commit record), then put the folder in place."""
    try:
        failed = [part for part in gathered if isinstance(part, str)]
        if failed:
            raise RuntimeError(failed[0])
        files = {name: entry for part in gathered for name, entry in part.items()}
        _write_meta(others, staging / META_FILE)
        faults.checkpoint_step("sharded-meta-written")
        for name in (DCP_METADATA, META_FILE):
            files[name] = integrity.checksum_file(staging / name)
        folder_commit.write_manifest_and_commit(staging, path, files, SHARDED, world_size=len(gathered))
    except Exception as err:
        _discard(staging)
        explained = errors.explain_save_error(err, path)
        if explained is err and not isinstance(err, OSError):
            explained = RuntimeError(f"Cannot save checkpoint '{path}': {type(err).__name__}: {err}")
        return explained
    commit.remove_legacy_leftovers(path)
    return None


def _write_meta(others: dict[str, Any], target: Path) -> None:
    """``torch.save`` into memory, then one plain write: a full disk is an ``OSError``, not torch's C++ message."""
    buffer = io.BytesIO()
    torch.save(others, buffer)
    with open(target, "wb") as f:
        f.write(buffer.getbuffer())
        f.flush()
        os.fsync(f.fileno())


def _discard(staging: Path) -> None:
    """Remove a staging folder that will not be committed (it may be gone already)."""
    shutil.rmtree(staging, ignore_errors=True)


def _stored_keys(metadata: Any) -> tuple[set[str], set[str]]:
    """The top-level keys a sharded checkpoint holds, and those of optimizers saved with state."""
    planner_data = metadata.planner_data or {}
    paths = [tuple(planner_data.get(key, key.split("."))) for key in metadata.state_dict_metadata]
    keys = {str(p[0]) for p in paths}
    with_state = {str(p[0]) for p in paths if len(p) > 2 and p[1] == "state"}
    return keys, with_state


def _read_meta(path: Path) -> dict[str, Any]:
    """The other state (``meta.pt``); :func:`checkpoint_errors.check_files` decided whether it may be missing."""
    if not (path / META_FILE).is_file():
        return {}
    try:
        return torch.load(path / META_FILE, map_location="cpu", weights_only=False)
    except OSError as err:
        raise errors.explain_load_error(err, path) from None
    except Exception as err:
        raise CheckpointCorruptError(path, [f"{META_FILE} cannot be read ({type(err).__name__}: {err})"]) from None


def _checked_metadata(path: Path, require_meta: bool = True) -> Any:
    """The checkpoint's DCP metadata, once its files are checked (before DCP reads anything)."""
    metadata = checkpoint_errors.read_metadata(path)
    checkpoint_errors.check_files(path, metadata, require_meta)
    return metadata


def load_sharded(
    path: str | os.PathLike, state: dict[str, Any], strict: bool, modules: Iterable[Module]
) -> dict[str, Any]:
    """Restore ``state`` from a sharded checkpoint into the current layout; return the unrequested extra keys."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    path = Path(path)
    metadata = _checked_metadata(path)
    stored, with_state = _stored_keys(metadata)
    others = _read_meta(path)
    validate_keys_for_loading(state.keys(), stored | set(others), strict=strict, path=path)
    parts = _split(state)
    candidates = [*parts.modules.values(), *modules]
    target: dict[str, Any] = {}
    owners: dict[str, Module] = {}
    for key, module in parts.modules.items():
        if key in stored:
            target[key] = model_state(module, full=False)
    for key, optimizer in parts.optimizers.items():
        if key not in stored:
            continue
        owners[key] = _owner(key, optimizer, candidates)
        if key in with_state:
            target[key] = get_optimizer_state_dict(owners[key], optimizer)  # the layout to read the shards into
        else:
            target[key] = {"param_groups": _named_groups(owners[key], optimizer)}
    if target:
        checkpoint_errors.check_shapes(path, metadata, target)
        planner = dcp.DefaultLoadPlanner(allow_partial_load=not strict)
        try:
            dcp.load(target, checkpoint_id=path, planner=planner)
        except BaseException as err:
            explained = checkpoint_errors.explain_load_failure(err, path)
            if explained is err:
                raise
            raise explained from None
    for key, module in parts.modules.items():
        if key in target:
            set_model_state_dict(module, target[key], options=_options(full=False, strict=strict))
    for key, optimizer in parts.optimizers.items():
        if key not in target:
            continue
        if key in with_state:
            set_optimizer_state_dict(owners[key], optimizer, target[key])
        else:
            _load_hyperparameters(optimizer, target[key]["param_groups"], path)
    _restore_others(parts.others, state, others)
    return others


def read_sharded(path: str | os.PathLike, require_meta: bool = True) -> dict[str, Any]:
    """The whole sharded checkpoint as one nested dict of full tensors, read in this process alone.

    ``require_meta=False`` also reads a checkpoint that ``torch.distributed.checkpoint.save`` wrote (no ``meta.pt``).
    """
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    path = Path(path)
    _checked_metadata(path, require_meta)
    others = _read_meta(path)
    checkpoint: dict[str, Any] = {}
    # The planner builds the state dict from the checkpoint's own metadata (what dcp_to_torch_save does).
    try:
        _load_state_dict(
            checkpoint, storage_reader=FileSystemReader(path), planner=_EmptyStateDictLoadPlanner(), no_dist=True
        )
    except BaseException as err:
        explained = checkpoint_errors.explain_load_failure(err, path)
        if explained is err:
            raise
        raise explained from None
    for value in checkpoint.values():
        if isinstance(value, dict) and "param_groups" in value:
            value.setdefault("state", {})  # an optimizer saved before its first step has nothing under "state"
    checkpoint.update(others)
    return checkpoint


def consolidate_checkpoint(checkpoint_dir: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write the sharded checkpoint ``checkpoint_dir`` as one ``torch.save`` file at ``output``.

    The file holds the same nested dict ``fabric.save`` writes with ``state_dict_type="full"``, so
    ``torch.load(output)["model"]`` loads into the plain, unsharded model. Runs in one process and
    needs the whole checkpoint in CPU memory.

    Example::

        consolidate_checkpoint("checkpoints/step-1000", "step-1000.pt")
        model.load_state_dict(torch.load("step-1000.pt")["model"])
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not is_sharded_checkpoint(checkpoint_dir):
        what = "does not exist" if not checkpoint_dir.exists() else f"has no {DCP_METADATA} file"
        raise ValueError(
            f"'{checkpoint_dir}' is not a sharded checkpoint: it {what}. Pass the directory that fabric.save wrote "
            "with a sharded strategy (strategy='fsdp' or 'model_parallel' and state_dict_type='sharded')."
        )
    output = Path(output)
    atomic_torch_save(read_sharded(checkpoint_dir, require_meta=False), output)
    return output


# -- full: one file ------------------------------------------------------------------------------------


def save_full(
    path: str | os.PathLike,
    state: dict[str, Any],
    filter: Filter | None,
    modules: Iterable[Module],
    is_global_zero: bool,
    checkpoint_io: CheckpointIO,
) -> None:
    """Gather ``state`` into rank 0's CPU memory and write it as one file; every rank calls it."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"fabric.save('{path}') with state_dict_type='full' writes one file, but '{path}' is a directory (a "
            "sharded checkpoint?). Pass another path, or remove the directory first."
        )
    parts = _split(state)
    candidates = [*parts.modules.values(), *modules]
    converted: dict[str, Any] = {}
    for key, obj in state.items():
        if key in parts.modules:
            value = model_state(obj, full=True)
        elif key in parts.optimizers:
            value = optimizer_state(_owner(key, obj, candidates), obj, full=True)
        else:
            value = obj.state_dict() if _is_stateful(obj) else obj
        converted[key] = _filtered(key, value, filter)
    converted = _without_emptied(converted, filter)
    if is_global_zero:
        checkpoint_io.save_checkpoint(checkpoint=converted, path=path)


def read_file(path: Path, checkpoint_io: CheckpointIO, weights_only: bool | None = None) -> Any:
    """A full checkpoint, memory-mapped where possible: every rank reads it without its own copy in memory.

    ``weights_only`` as in ``fabric.load`` (``None``: the checkpoint IO's own setting).
    """
    if type(checkpoint_io) is TorchCheckpointIO:
        mapped_weights_only = checkpoint_io.weights_only if weights_only is None else weights_only
        try:
            return torch.load(path, mmap=True, map_location="cpu", weights_only=mapped_weights_only)
        except Exception:
            pass  # not mappable (e.g. a legacy format) or damaged: the checkpoint IO reads it or explains why
    return load_with(checkpoint_io, path, weights_only)


def load_full(
    path: str | os.PathLike,
    state: dict[str, Any],
    strict: bool,
    modules: Iterable[Module],
    checkpoint_io: CheckpointIO,
    weights_only: bool | None = None,
) -> dict[str, Any]:
    """Restore ``state`` from a full checkpoint file into the sharded models; return what it did not ask for."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    path = Path(path)
    checkpoint = read_file(path, checkpoint_io, weights_only)
    if not isinstance(checkpoint, dict):
        raise TypeError(
            f"Checkpoint '{path}' holds a {type(checkpoint).__name__}, not a dict of named states, so it cannot "
            "restore a state dict. Load it with fabric.load(path) (no state) or fabric.load_raw(path, obj)."
        )
    validate_keys_for_loading(state.keys(), checkpoint.keys(), strict=strict, path=path)
    parts = _split(state)
    candidates = [*parts.modules.values(), *modules]
    for key, module in parts.modules.items():
        if key in checkpoint:
            load_full_model(module, checkpoint.pop(key), strict)
    for key, optimizer in parts.optimizers.items():
        if key not in checkpoint:
            continue
        saved = checkpoint.pop(key)
        owner = _owner(key, optimizer, candidates)
        if not saved.get("state"):
            _load_hyperparameters(optimizer, saved.get("param_groups", []), path)
        else:
            options = _options(full=True)
            set_optimizer_state_dict(owner, optimizer, _named_state(saved, owner, optimizer), options=options)
    _restore_others(parts.others, state, checkpoint)
    return checkpoint


def load_full_model(module: Module, state_dict: dict[str, Any], strict: bool) -> None:
    """Load a full (unsharded) state dict into a sharded model: each rank keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(module, state_dict, options=_options(full=True, strict=strict))
