"""DeepSpeed checkpoints through ``fabric.save``/``fabric.load``, full weights, and ``fabric consolidate``.

``fabric.save(path, {"model": model, "optimizer": optimizer, "step": 10})`` writes DeepSpeed's own
checkpoint directory (``engine.save_checkpoint`` with the tag ``checkpoint``, as Lightning does): each
rank its partitions, rank 0 the model states, with the rest of the state (``"step"``, schedulers,
other stateful objects as state dicts) stored as DeepSpeed's "client state" beside them, and
DeepSpeed's ``zero_to_fp32.py`` copied in. Its own tools read it unchanged; fabric adds
``fabric-manifest.json`` (every file's size and CRC-32), which ``fabric checkpoint verify`` checks.

A save is committed atomically by fabric-core's folder protocol (:mod:`fabric_core.io.commit`): DeepSpeed
writes into a staging folder beside ``path``, which takes ``path``'s place once every file is written and
listed in the manifest, so a crash at any moment leaves the previous checkpoint or the new one, whole.
Each step ends with ``faults.checkpoint_step(name)``, where tests crash the process on purpose:

================================  ====================================================================
``deepspeed-staging-created``     rank 0 made ``.NAME.partial.HOST.PID.TOKEN`` beside ``path`` (after
                                  putting an interrupted save's complete copy back and removing dead
                                  saves' folders) and told every rank
``deepspeed-written``             every rank's ``engine.save_checkpoint`` into it returned
``deepspeed-manifest-written``    rank 0 checksummed and flushed every file and wrote the manifest, last:
                                  the commit record
``deepspeed-exchanged``, ...      :func:`fabric_core.io.commit.commit` put it in place (an atomic exchange,
                                  or ``-previous-kept`` and ``-renamed``) and deleted the old checkpoint
                                  (``-previous-removed``)
================================  ====================================================================

A load of a ``path`` that a crash left missing, or beside a newer complete copy, reads the newest complete
copy with a warning (:func:`fabric_core.io.commit.locate`), or raises ``FileNotFoundError`` naming the copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import Module
from torch.optim import Optimizer

from fabric_core.io import commit as folder_commit
from fabric_core.io import errors, faults, integrity
from fabric_core.io.durable import fsync_directory
from fabric_core.strategies.strategy import validate_keys_for_loading
from fabric_core.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fabric_deepspeed.strategy import DeepSpeedStrategy

#: The tag (sub-folder) every checkpoint is written under; Lightning's, so checkpoints move both ways.
TAG = "checkpoint"
#: The DeepSpeed format's rules for :mod:`fabric_core.io.commit`: its steps are named ``deepspeed-...``.
RULES = folder_commit.Rules(name="deepspeed")
#: Where the names of the model and optimizer entries of ``state`` are recorded in the client state.
META_KEY = "fabric_deepspeed"
#: Keys of DeepSpeed's own in its model-states file: a user key with one of these names would clash.
DEEPSPEED_KEYS = frozenset(
    {
        "module",
        "buffer_names",
        "checkpoint_parallel_dimensions",
        "optimizer",
        "param_shapes",
        "frozen_param_shapes",
        "shared_params",
        "frozen_param_fragments",
        "lr_scheduler",
        "data_sampler",
        "random_ltd",
        "sparse_tensor_module_names",
        "skipped_steps",
        "global_steps",
        "global_samples",
        "dp_world_size",
        "mp_world_size",
        "ds_config",
        "ds_version",
    }
)


def _engine_keys(strategy: DeepSpeedStrategy, state: dict[str, Any], action: str) -> tuple[str, Any]:
    found = [(key, value) for key, value in state.items() if any(value is e for e in strategy._engines)]
    if not found:
        raise ValueError(
            f"fabric.{action}() under DeepSpeed needs the model set up with fabric.setup() in the state, e.g. "
            f"fabric.{action}(path, {{'model': model, 'optimizer': optimizer, ...}}); got keys {sorted(state)}."
        )
    if len(found) > 1:
        raise ValueError(
            f"fabric.{action}() got {len(found)} DeepSpeed models ({', '.join(k for k, _ in found)}): a DeepSpeed "
            "checkpoint holds one. Save (and load) each model with its optimizer to its own path."
        )
    return found[0]


def save(
    strategy: DeepSpeedStrategy,
    path: str | Path,
    state: dict[str, Any],
    storage_options: Any | None,
    filter: dict[str, Callable[[str, Any], bool]] | None,
) -> None:
    if storage_options is not None:
        raise TypeError(
            "fabric.save(..., storage_options=...) is not supported under DeepSpeed: DeepSpeed writes its checkpoint "
            "directory itself, without a CheckpointIO."
        )
    if filter is not None:
        raise TypeError(
            "fabric.save(..., filter=...) is not supported under DeepSpeed: the engine saves its model and optimizer "
            "whole. Leave entries you do not want out of the state instead."
        )
    model_key, engine = _engine_keys(strategy, state, "save")
    path = Path(strategy.broadcast(str(path)))
    if path.is_file():
        raise FileExistsError(
            f"fabric.save('{path}') under DeepSpeed writes a checkpoint directory, but '{path}' is a file. Choose "
            "another path, or delete the file first."
        )
    optimizer_keys = [key for key, value in state.items() if engine.optimizer is not None and value is engine.optimizer]
    clashing = sorted(DEEPSPEED_KEYS.intersection(state) - {model_key, *optimizer_keys} | ({META_KEY} & set(state)))
    if clashing:
        raise ValueError(
            f"fabric.save() under DeepSpeed cannot store the state keys {clashing}: DeepSpeed's checkpoint uses these "
            "names itself. Rename them in the state (e.g. 'my_optimizer')."
        )
    extra = {key: value for key, value in state.items() if key != model_key and key not in optimizer_keys}
    client_state = strategy.convert_state(extra)
    client_state[META_KEY] = {"model_key": model_key, "optimizer_keys": optimizer_keys, "keys": sorted(client_state)}
    staging = folder_commit.create_staging_for_all(path, RULES, strategy.is_global_zero, strategy.broadcast)
    try:
        engine.save_checkpoint(
            str(staging),
            client_state=client_state,
            tag=TAG,
            exclude_frozen_parameters=strategy.exclude_frozen_parameters,
        )
        _wait_for_writer(engine)
    except BaseException as err:
        # DeepSpeed raises on the ranks that failed; the others wait in its barrier until the run ends.
        if strategy.is_global_zero:
            folder_commit.remove_folder(staging)
        explained = errors.explain_save_error(err, path)
        if explained is err:
            raise
        raise explained from err
    strategy.barrier("fabric.save (DeepSpeed files written)")
    faults.checkpoint_step("deepspeed-written")
    outcome = _commit(staging, path, strategy.world_size) if strategy.is_global_zero else None
    outcome = strategy.broadcast(outcome)
    if outcome is not None:
        raise outcome from None


def _wait_for_writer(engine: Any) -> None:
    """With a decoupled checkpoint writer (``checkpoint.writer.decoupled``), wait until it has written everything.

    Its files are written in the background after ``save_checkpoint`` returns; the manifest must come after them.
    """
    writer = getattr(engine, "checkpoint_engine", None)
    if writer is not None and callable(getattr(writer, "is_decoupled", None)) and writer.is_decoupled():
        engine._commit_decoupled_checkpoint()  # DeepSpeed's own wait, which it runs at the next step otherwise


def _commit(staging: Path, path: Path, world_size: int) -> BaseException | None:
    """On rank 0: checksum and flush every file, write the manifest (the commit record), put the folder in place."""
    try:
        files = _checksum_and_flush(staging)
        folder_commit.write_manifest_and_commit(staging, path, files, RULES, world_size=world_size)
    except Exception as err:
        folder_commit.remove_folder(staging)
        explained = errors.explain_save_error(err, path)
        if explained is err and not isinstance(err, OSError):
            explained = RuntimeError(f"Cannot save checkpoint '{path}': {type(err).__name__}: {err}")
        return explained
    return None


def _checksum_and_flush(staging: Path) -> dict[str, dict[str, Any]]:
    """Size and CRC-32 of every file DeepSpeed wrote, each flushed to the disk (DeepSpeed does not flush)."""
    files = {}
    for root, _, names in os.walk(staging):
        for name in sorted(names):
            file = Path(root, name)
            files[file.relative_to(staging).as_posix()] = integrity.checksum_file(file)
            descriptor = os.open(file, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_directory(root)
    return files


def check_directory(path: Path) -> None:
    """A DeepSpeed checkpoint directory, or an error that says what ``path`` is instead."""
    if path.is_dir():
        if (path / TAG).is_dir() or (path / "latest").is_file():
            return
        raise FileNotFoundError(
            f"'{path}' is not a DeepSpeed checkpoint directory: it has no '{TAG}' folder (written by fabric.save "
            "under DeepSpeed) and no 'latest' file."
        )
    if path.is_file():
        raise ValueError(
            f"'{path}' is a single file, not a DeepSpeed checkpoint directory. To load full weights (e.g. a "
            "consolidated checkpoint) into the model, use DeepSpeedStrategy(load_full_weights=True)."
        )
    raise FileNotFoundError(f"Checkpoint not found: '{path}' does not exist.")


def _tag(path: Path) -> str:
    if (path / TAG).is_dir():
        return TAG
    return (path / "latest").read_text().strip()


def checkpoint_to_read(strategy: DeepSpeedStrategy, path: Path) -> Path:
    """``path``, or the newest complete copy an interrupted save left beside it (with a warning).

    Rank 0 decides (whether a save's owner still runs is known on its host only) and tells every rank.
    """
    decision = folder_commit.locate_for_all(path, RULES, strategy.is_global_zero, strategy.broadcast)
    if decision.warning is not None:
        # Pointing at the user's fabric.load: through load(), the strategy's load_checkpoint and Fabric.load.
        rank_zero_warn(decision.warning, stacklevel=7)
    return Path(decision.source)


def load(
    strategy: DeepSpeedStrategy,
    path: Path,
    state: dict[str, Any],
    strict: bool,
) -> dict[str, Any]:
    """Restore ``state`` in place from a DeepSpeed checkpoint directory; return the stored keys it did not ask for.

    An interrupted save's complete copy is read instead of ``path`` where :func:`checkpoint_to_read` says so.
    """
    path = checkpoint_to_read(strategy, path)
    check_directory(path)
    model_key, engine = _engine_keys(strategy, state, "load")
    load_optimizer = any(
        isinstance(value, Optimizer) or value is engine.optimizer for key, value in state.items() if key != model_key
    )
    _, client_state = engine.load_checkpoint(
        str(path),
        tag=_tag(path),
        load_optimizer_states=load_optimizer,
        load_lr_scheduler_states=False,
        load_module_strict=strict,
    )
    if client_state is None:
        raise RuntimeError(
            f"DeepSpeed could not load the checkpoint '{path}': files of the tag '{_tag(path)}' are missing. "
            "Check that every rank's files were written (a save that was interrupted leaves some out)."
        )
    meta = client_state.pop(META_KEY, {})
    # What the save stored beside the engine (DeepSpeed returns its own bookkeeping keys with it).
    stored = meta.get("keys", sorted(set(client_state) - DEEPSPEED_KEYS))
    client_state = {key: client_state[key] for key in stored if key in client_state}
    stored_optimizers = set(meta.get("optimizer_keys", []))
    requested = [
        key
        for key, value in state.items()
        if key != model_key and value is not engine.optimizer and key not in stored_optimizers
    ]
    validate_keys_for_loading(requested, client_state.keys(), strict=strict, path=path)
    for key in requested:
        if key not in client_state:
            continue
        value = client_state.pop(key)
        target = state[key]
        if isinstance(target, Module) or callable(getattr(target, "load_state_dict", None)):
            target.load_state_dict(value)
        else:
            state[key] = value
    return client_state


# -- full (unpartitioned) weights -----------------------------------------------------------------


def _is_engine(module: Module) -> bool:
    return callable(getattr(module, "save_checkpoint", None)) and isinstance(getattr(module, "module", None), Module)


def load_full_module_state(
    strategy: DeepSpeedStrategy, module: Module, state_dict: dict[str, Any], strict: bool
) -> None:
    """Load a full state dict into a set-up model (gathering each module's partitions under stage 3)."""
    if not _is_engine(module):
        module.load_state_dict(state_dict, strict=strict)
        return
    engine, target = module, module.module
    if strategy.zero_stage_3:
        _check_full_state(target, state_dict, strict)
        _load_partitioned(strategy, target, state_dict)
    else:
        target.load_state_dict(state_dict, strict=strict)
    refresh = getattr(engine.optimizer, "refresh_fp32_params", None)
    if callable(refresh):
        refresh()  # the optimizer's float32 master weights follow the loaded ones


def _full_shape(parameter: torch.Tensor) -> tuple[int, ...]:
    return tuple(getattr(parameter, "ds_shape", parameter.shape))


def _check_full_state(target: Module, state_dict: dict[str, Any], strict: bool) -> None:
    # Checked on every rank before any collective, so a mismatch fails everywhere instead of hanging the others.
    expected = {name: _full_shape(p) for name, p in target.named_parameters()}
    expected.update({name: tuple(b.shape) for name, b in target.named_buffers()})
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(
        f"{name}: checkpoint {tuple(state_dict[name].shape)}, model {shape}"
        for name, shape in expected.items()
        if name in state_dict and isinstance(state_dict[name], torch.Tensor) and tuple(state_dict[name].shape) != shape
    )
    problems = []
    if wrong:
        problems.append("shapes differ: " + "; ".join(wrong))
    if strict and missing:
        problems.append(f"missing keys: {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if problems:
        raise RuntimeError(
            f"The full state dict does not fit the model ({'; '.join(problems)}). Load the checkpoint of this "
            "model, or pass strict=False to skip missing and unexpected keys."
        )


def _load_partitioned(strategy: DeepSpeedStrategy, target: Module, state_dict: dict[str, Any]) -> None:
    gathered = strategy._require_deepspeed("load").zero.GatheredParameters
    for prefix, submodule in target.named_modules():
        own = list(submodule.named_parameters(recurse=False))
        key = f"{prefix}." if prefix else ""
        # One module at a time: no rank ever holds more than one module's parameters whole.
        with gathered([p for _, p in own], modifier_rank=0):
            if strategy.global_rank == 0:
                with torch.no_grad():
                    for name, parameter in own:
                        if key + name in state_dict:
                            parameter.copy_(state_dict[key + name])
        with torch.no_grad():
            for name, buffer in submodule.named_buffers(recurse=False):
                if buffer is not None and key + name in state_dict:
                    buffer.copy_(state_dict[key + name])


def full_module_state(strategy: DeepSpeedStrategy, module: Module) -> dict[str, Any]:
    """The whole state dict of a module (a DeepSpeed engine's model gathered from its partitions under stage 3)."""
    if not _is_engine(module):
        return module.state_dict()
    target = module.module
    if not strategy.zero_stage_3:
        return target.state_dict()
    gathered = strategy._require_deepspeed("save").zero.GatheredParameters
    with gathered(list(target.parameters()), modifier_rank=None):
        return {name: value.detach().clone() for name, value in target.state_dict().items()}


def reject_optimizer_for_full_weights(strategy: DeepSpeedStrategy, state: Any, path: Path) -> None:
    """A full-weights file restores a model only: DeepSpeed's partitioned optimizer cannot take its state."""
    values = state.values() if isinstance(state, dict) else [state]
    engines_optimizers = {id(e.optimizer) for e in strategy._engines if e.optimizer is not None}
    if any(id(value) in engines_optimizers for value in values):
        raise ValueError(
            f"'{path}' is loaded as full weights (load_full_weights=True), which restores the model only, not "
            "DeepSpeed's partitioned optimizer. Leave the optimizer out of the state, or load a DeepSpeed checkpoint "
            "directory (DeepSpeedStrategy(load_full_weights=False))."
        )
