"""Seeding every random number generator of a run, including dataloader workers."""

from __future__ import annotations

import logging
import operator
import os
import random
from typing import Any

import torch

log = logging.getLogger("fabric_core")

SEED_ENV = "FABRIC_GLOBAL_SEED"
SEED_WORKERS_ENV = "FABRIC_SEED_WORKERS"
_MIN_SEED = 0
_MAX_SEED = 2**32 - 1


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def seed_everything(seed: int | None = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed Python's ``random``, NumPy (when installed) and torch (all devices) with ``seed``.

    The seed is also exported as ``FABRIC_GLOBAL_SEED`` so that processes started later (by ``fabric
    run`` or ``launch``) and the distributed sampler use the same one. With ``workers=True``,
    dataloaders set up by Fabric give every worker of every rank its own, derived seed.

    Args:
        seed: an integer in ``[0, 2**32 - 1]``; ``None`` reads ``FABRIC_GLOBAL_SEED`` (or uses 0).
        workers: derive distinct seeds for dataloader workers (see :func:`worker_init_function`).
        verbose: log the seed at INFO level.

    Returns:
        The seed used.

    Example::

        from fabric_core import seed_everything
        seed_everything(42)
    """
    if seed is None:
        raw = os.environ.get(SEED_ENV)
        if raw is None:
            seed = 0
        else:
            try:
                seed = int(raw)
            except ValueError:
                raise ValueError(
                    f"Environment variable {SEED_ENV}={raw!r} is not an integer seed; unset it or set an integer."
                ) from None
    if isinstance(seed, bool):
        raise TypeError(f"seed_everything(seed={seed!r}) needs an int, got bool.")
    try:
        seed = operator.index(seed)  # int and NumPy integers
    except TypeError:
        raise TypeError(f"seed_everything(seed={seed!r}) needs an int, got {type(seed).__name__}.") from None
    if not _MIN_SEED <= seed <= _MAX_SEED:
        raise ValueError(
            f"seed_everything(seed={seed}) is out of range: a seed must lie in [{_MIN_SEED}, {_MAX_SEED}] "
            "(NumPy's limit). Use e.g. seed % 2**32."
        )
    if verbose:
        log.info("Seed set to %d", seed)
    os.environ[SEED_ENV] = str(seed)
    random.seed(seed)
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(seed)
    torch.manual_seed(seed)
    os.environ[SEED_WORKERS_ENV] = "1" if workers else "0"
    return seed


def reset_seed() -> None:
    """Re-apply the seed exported by :func:`seed_everything` (in a freshly started process)."""
    raw = os.environ.get(SEED_ENV)
    if raw is None:
        return
    workers = os.environ.get(SEED_WORKERS_ENV, "0") == "1"
    seed_everything(int(raw), workers=workers, verbose=False)


def _mix(*values: int) -> int:
    """A 64-bit hash of the integers (splitmix64 steps), stable across processes and platforms."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        state = z ^ (z >> 31)
    return state


def worker_init_function(worker_id: int, rank: int | None = None) -> None:
    """Seed torch, ``random`` and NumPy in a dataloader worker from (base seed, worker id, rank).

    Each worker of each rank gets a different seed, and the same one again when the run is repeated
    with the same global seed. Fabric installs it on dataloaders when ``seed_everything(workers=True)``.
    """
    from fabric_core.utilities.rank_zero import rank_zero_state

    global_rank = rank if rank is not None else rank_zero_state.rank
    # torch seeds each worker with base_seed + worker_id; undo that to get the run's base seed back.
    base_seed = torch.initial_seed() - worker_id
    torch_seed = _mix(base_seed, worker_id, global_rank, 0)
    torch.manual_seed(torch_seed)
    random.seed(_mix(base_seed, worker_id, global_rank, 1))
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(_mix(base_seed, worker_id, global_rank, 2) & 0xFFFFFFFF)
