"""Seeding every random number generator of a run, including dataloader workers."""

from __future__ import annotations

import os
import random
from typing import Any

import torch

from fabric_core.utilities.rank_zero import (
    _info_logger,
    _rank_from_launcher,
    rank_prefixed_message,
    rank_zero_state,
    rank_zero_warn,
)

SEED_ENV = "FABRIC_GLOBAL_SEED"
SEED_WORKERS_ENV = "FABRIC_SEED_WORKERS"
#: Lightning's variable, read when ``FABRIC_GLOBAL_SEED`` is not set (a job script written for Lightning).
LIGHTNING_SEED_ENV = "PL_GLOBAL_SEED"
min_seed_value = 0
max_seed_value = 2**32 - 1  # NumPy's limit
_UINT64 = (1 << 64) - 1


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _seed_from_environment() -> tuple[int, bool]:
    """The exported seed (and True), or 0 (and False) when no variable holds one."""
    for name in (SEED_ENV, LIGHTNING_SEED_ENV):
        raw = os.environ.get(name)
        if raw is None:
            continue
        try:
            return int(raw), True
        except ValueError:
            raise ValueError(
                f"Environment variable {name}={raw!r} is not an integer seed; unset it or set an integer."
            ) from None
    return 0, False


def _as_seed(seed: Any) -> int:
    try:
        value = int(seed)  # floats are truncated and numeric strings parsed, as Lightning does
    except (TypeError, ValueError, OverflowError) as err:
        raise type(err)(
            f"seed_everything(seed={seed!r}) needs an integer (or a value int() accepts), got {type(seed).__name__}."
        ) from None
    if not min_seed_value <= value <= max_seed_value:
        raise ValueError(
            f"seed_everything(seed={seed!r}) is out of range: a seed must lie in [{min_seed_value}, {max_seed_value}] "
            "(NumPy's limit). Use e.g. seed % 2**32."
        )
    return value


def seed_everything(seed: int | None = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed Python's ``random``, NumPy (when installed) and torch (all devices) with ``seed``.

    The seed is also exported as ``FABRIC_GLOBAL_SEED`` so that processes started later (by ``fabric
    run`` or ``launch``) and the distributed sampler use the same one. With ``workers=True``,
    dataloaders set up by Fabric give every worker of every rank its own, derived seed.

    Args:
        seed: an integer in ``[0, 2**32 - 1]``, or anything ``int()`` turns into one (``42.0``, ``"42"``).
            ``None`` reads ``FABRIC_GLOBAL_SEED``, then Lightning's ``PL_GLOBAL_SEED``; with neither set
            the seed is 0 and, when ``verbose``, a warning says so.
        workers: derive distinct seeds for dataloader workers (see :func:`pl_worker_init_function`).
        verbose: log "Seed set to N" (prefixed with ``[rank: R]`` in a launched process) at INFO level
            under the ``fabric_core`` logger, which prints to stderr unless logging is configured.

    Returns:
        The seed used.

    Example::

        from fabric_core import seed_everything
        seed_everything(42)
    """
    if seed is None:
        seed, found = _seed_from_environment()
        if not found and verbose:
            rank_zero_warn(f"No seed found, seed set to {seed}", stacklevel=4)
    seed = _as_seed(seed)
    if verbose:
        _info_logger(__name__).info(rank_prefixed_message(f"Seed set to {seed}", _rank_from_launcher()))
    os.environ[SEED_ENV] = str(seed)
    random.seed(seed)
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(seed)
    torch.manual_seed(seed)
    os.environ[SEED_WORKERS_ENV] = "1" if workers else "0"
    return seed


def reset_seed() -> None:
    """Re-apply the seed exported by :func:`seed_everything` (in a freshly started process); without one, do nothing.

    Example::

        seed_everything(7)
        ...  # in a process launched later, with the environment inherited:
        reset_seed()  # seeds exactly as seed_everything(7) did
    """
    raw = os.environ.get(SEED_ENV)
    if raw is None:
        return
    workers = os.environ.get(SEED_WORKERS_ENV, "0") == "1"
    seed_everything(int(raw), workers=workers, verbose=False)


def _fmix64(value: int) -> int:
    """MurmurHash3's 64-bit finaliser: spreads every input bit over the whole word."""
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) & _UINT64
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) & _UINT64
    return value ^ (value >> 33)


def _worker_seeds(base_seed: int, worker_id: int, rank: int, count: int) -> list[int]:
    """``count`` 64-bit seeds for one worker of one rank: the mixed triple, stepped by Knuth's MMIX LCG.

    The same derivation as Lightning's, so a worker of a ported program draws the numbers it drew there.
    """
    state = _fmix64((base_seed << 32) | (worker_id << 16) | rank)
    seeds = []
    for _ in range(count):
        state = (state * 6364136223846793005 + 1) & _UINT64
        seeds.append(state)
    return seeds


def worker_init_function(worker_id: int, rank: int | None = None) -> None:
    """Seed torch, ``random`` and NumPy in a dataloader worker from (base seed, worker id, rank).

    Each worker of each rank gets a different seed, and the same one again when the run is repeated
    with the same global seed. Fabric installs it on dataloaders when ``seed_everything(workers=True)``;
    pass it yourself as ``DataLoader(..., worker_init_fn=partial(worker_init_function, rank=rank))``.
    The seeds are the ones Lightning's ``pl_worker_init_function`` derives, which is this function's
    other name.

    Example::

        loader = DataLoader(dataset, num_workers=4, worker_init_fn=worker_init_function)
    """
    global_rank = rank if rank is not None else rank_zero_state.rank
    # torch seeds each worker with base_seed + worker_id; undo that to get the loader's base seed back.
    base_seed = torch.initial_seed() - worker_id
    torch_seed, python_high, python_low, _ = _worker_seeds(base_seed, worker_id, global_rank, count=4)
    torch.manual_seed(torch_seed)
    random.seed((python_high << 32) | python_low)
    numpy = _numpy()
    if numpy is not None:
        # NumPy's own mixing of the triple, so its stream is independent of the two above
        numpy.random.seed(numpy.random.SeedSequence([base_seed, worker_id, global_rank]).generate_state(4))


#: Lightning's name for :func:`worker_init_function`.
pl_worker_init_function = worker_init_function
