"""Preparing a ``DataLoader`` for a distributed run without rebuilding the user's loader, and data helpers.

The helpers Lightning Fabric users import from ``lightning.fabric.utilities.data`` live here under the
same names: :class:`AttributeDict`, :func:`has_len`, :func:`sized_len`, :func:`has_iterable_dataset`
and :func:`suggested_max_num_workers`.
"""

from __future__ import annotations

import copy
import math
import operator
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

from fabric_core.utilities.rank_zero import rank_zero_warn
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


# -- helpers for users' data code ------------------------------------------------------------------


def has_iterable_dataset(dataloader: object) -> bool:
    """Whether ``dataloader`` has a ``dataset`` attribute that is a ``torch.utils.data.IterableDataset``.

    Example::

        has_iterable_dataset(DataLoader(range(4)))  # False
    """
    return isinstance(getattr(dataloader, "dataset", None), IterableDataset)


def sized_len(dataloader: object) -> int | None:
    """``len(dataloader)``, or ``None`` when it has no length (``TypeError`` or ``NotImplementedError``).

    Example::

        sized_len([1, 2, 3])  # 3
        sized_len(iter([1, 2, 3]))  # None
    """
    try:
        return len(dataloader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return None


def has_len(dataloader: object) -> bool:
    """Whether ``len(dataloader)`` works; warns (on rank 0) when the length is 0 or comes from an iterable dataset.

    An ``IterableDataset`` with ``__len__`` is suspicious: with several workers, each yields the whole
    dataset unless it is told which part is its own, so the length may not match what is iterated.

    Example::

        if has_len(loader):
            steps_per_epoch = len(loader)
    """
    length = sized_len(dataloader)
    if length == 0:
        rank_zero_warn(
            f"{type(dataloader).__name__} has length 0, so an epoch over it does nothing. Check that this is intended "
            "(an empty dataset, or a batch size larger than the dataset with drop_last=True)."
        )
    if length is not None and has_iterable_dataset(dataloader):
        rank_zero_warn(
            "The IterableDataset of this dataloader defines __len__. With num_workers > 1 each worker iterates "
            "the whole dataset unless you split it per worker, so len() may not match the number of batches."
        )
    return length is not None


def _cpus_available() -> int:
    if hasattr(os, "sched_getaffinity"):  # the CPUs this process may run on (Linux), not all the machine's
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def suggested_max_num_workers(local_world_size: int) -> int:
    """An upper bound for ``DataLoader(num_workers=...)``: this process's share of the CPUs, less one, at least 1.

    Args:
        local_world_size: the number of processes on this machine (the ``devices`` given to Fabric).

    Example::

        loader = DataLoader(dataset, num_workers=suggested_max_num_workers(local_world_size=2))
    """
    try:
        local_world_size = operator.index(local_world_size)
    except TypeError:
        raise TypeError(
            f"suggested_max_num_workers(local_world_size={local_world_size!r}): expected an int, the number of "
            "processes on this machine."
        ) from None
    if local_world_size < 1:
        raise ValueError(
            f"suggested_max_num_workers(local_world_size={local_world_size}): expected at least 1, the number of "
            "processes on this machine."
        )
    # one CPU of each process's share stays free for the process itself
    return max(1, _cpus_available() // local_world_size - 1)


class AttributeDict(dict):
    """A ``dict`` whose keys can also be read, set and deleted as attributes.

    Handy for the state passed to ``fabric.save`` and ``fabric.load``. Its ``repr`` lists one key per
    line, sorted, with the values aligned.

    Example::

        state = AttributeDict(model=model, step=0)
        state.step += 1
        fabric.save("checkpoint.ckpt", state)
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute or key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]  # KeyError for a missing key, as in Lightning

    def __repr__(self) -> str:
        if not self:
            return ""
        labels = {key: f'"{key}":' for key in self}
        width = max(len(label) for label in labels.values())
        return "\n".join(f"{labels[key]:<{width}} {self[key]}" for key in sorted(self, key=str))
