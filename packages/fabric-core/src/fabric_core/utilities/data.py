"""Preparing a ``DataLoader`` for a distributed run without rebuilding the user's loader."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Sized
from functools import partial
from typing import Any

from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
)

from fabric_core.utilities.seed import SEED_ENV, SEED_WORKERS_ENV, worker_init_function


class DistributedSamplerWrapper(Sampler):
    """Splits the indices of any sampler among the ranks, keeping the sampler's own order.

    Each epoch draws the wrapped sampler's indices once and hands rank ``r`` every ``num_replicas``-th
    of them, starting at ``r``. The list is padded by repeating its start so that every rank gets the
    same number of samples (or truncated with ``drop_last``), as ``DistributedSampler`` does.
    """

    def __init__(self, sampler: Sampler, num_replicas: int, rank: int, drop_last: bool = False) -> None:
        if not isinstance(sampler, Sized):
            raise TypeError(
                f"The sampler {type(sampler).__name__} has no len(), so it cannot be split among ranks. Give it a "
                "__len__, or pass use_distributed_sampler=False and split the data yourself."
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} must lie in [0, {num_replicas}).")
        self.sampler = sampler
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        total = len(self.sampler)
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(total / self.num_replicas)

    def __iter__(self) -> Iterator[Any]:
        indices = list(self.sampler)
        per_rank = len(self)
        wanted = per_rank * self.num_replicas
        if len(indices) < wanted and indices:
            repeats = math.ceil((wanted - len(indices)) / len(indices))
            indices += (indices * repeats)[: wanted - len(indices)]
        indices = indices[:wanted]
        return iter(indices[self.rank : wanted : self.num_replicas])

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch and pass it on to the wrapped sampler, so that it can reshuffle."""
        self.epoch = epoch
        inner = getattr(self.sampler, "set_epoch", None)
        if callable(inner):
            inner(epoch)


def _global_seed() -> int:
    raw = os.environ.get(SEED_ENV, "0")
    return int(raw) if raw.lstrip("-").isdigit() else 0


def needs_distributed_sampler(dataloader: DataLoader) -> bool:
    """Whether the loader's sampling must be split among ranks (map-style data not already split)."""
    if isinstance(dataloader.dataset, IterableDataset):
        return False
    samplers = (
        dataloader.sampler,
        dataloader.batch_sampler,
        getattr(dataloader.batch_sampler, "sampler", None),
    )
    return not any(isinstance(s, (DistributedSampler, DistributedSamplerWrapper)) for s in samplers)


def _replace(dataloader: DataLoader, **attributes: Any) -> DataLoader:
    # DataLoader forbids assigning its sampler attributes after __init__; a shallow copy with the
    # attributes set directly keeps every other setting (and works for subclasses with their own args).
    new = copy.copy(dataloader)
    for name, value in attributes.items():
        object.__setattr__(new, name, value)
    object.__setattr__(new, "_iterator", None)
    return new


def with_distributed_sampler(dataloader: DataLoader, num_replicas: int, rank: int) -> DataLoader:
    """A copy of ``dataloader`` whose batches cover only this rank's share of the data.

    A ``RandomSampler``/``SequentialSampler`` becomes a ``DistributedSampler`` (shuffling when the loader
    shuffled, seeded with the global seed); any other sampler or batch sampler is wrapped, not replaced.
    """
    batch_sampler = dataloader.batch_sampler
    sampler = dataloader.sampler
    custom_batch_sampler = batch_sampler is not None and type(batch_sampler) is not BatchSampler
    if custom_batch_sampler:
        wrapped = DistributedSamplerWrapper(batch_sampler, num_replicas=num_replicas, rank=rank)
        return _replace(dataloader, batch_sampler=wrapped)
    if type(sampler).__name__ in ("RandomSampler", "SequentialSampler") and type(sampler).__module__.startswith(
        "torch.utils.data"
    ):
        new_sampler: Sampler = DistributedSampler(
            dataloader.dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=isinstance(sampler, RandomSampler),
            seed=_global_seed(),
        )
    else:
        new_sampler = DistributedSamplerWrapper(sampler, num_replicas=num_replicas, rank=rank)
    if batch_sampler is None:
        return _replace(dataloader, sampler=new_sampler)
    new_batch_sampler = BatchSampler(
        new_sampler, batch_size=batch_sampler.batch_size, drop_last=batch_sampler.drop_last
    )
    return _replace(dataloader, sampler=new_sampler, batch_sampler=new_batch_sampler)


def with_worker_seeding(dataloader: DataLoader, rank: int) -> DataLoader:
    """Install :func:`worker_init_function` when ``seed_everything(workers=True)`` asked for it."""
    if os.environ.get(SEED_WORKERS_ENV) != "1" or dataloader.worker_init_fn is not None or dataloader.num_workers == 0:
        return dataloader
    return _replace(dataloader, worker_init_fn=partial(worker_init_function, rank=rank))


def set_sampler_epoch(dataloader: DataLoader, epoch: int) -> None:
    """Call ``set_epoch`` on the loader's sampler and batch sampler, where they have one."""
    seen = set()
    for sampler in (
        dataloader.sampler,
        dataloader.batch_sampler,
        getattr(dataloader.batch_sampler, "sampler", None),
    ):
        if sampler is None or id(sampler) in seen:
            continue
        seen.add(id(sampler))
        if isinstance(sampler, DistributedSamplerWrapper):
            seen.add(id(sampler.sampler))  # the wrapper forwards set_epoch itself
        set_epoch = getattr(sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
