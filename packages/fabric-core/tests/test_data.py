"""Preparing dataloaders: distributed samplers, sampler epochs, worker seeding and the loader wrapper."""

from __future__ import annotations

import random
from functools import partial

import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    WeightedRandomSampler,
    get_worker_info,
)

import fabric_core
from fabric_core.utilities.data import (
    DistributedSamplerWrapper,
    needs_distributed_sampler,
    set_sampler_epoch,
    with_distributed_sampler,
    with_worker_seeding,
)
from fabric_core.utilities.seed import worker_init_function
from fabric_core.wrappers import _FabricDataLoader


class _Range(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class _Stream(IterableDataset):
    def __iter__(self):
        yield from range(4)


class _Reversed(Sampler):
    """A custom sampler with its own order, which records the epochs it is given."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.epochs: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(range(self.n - 1, -1, -1))

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


class _PairBatches(Sampler):
    """A custom batch sampler: batches of two neighbouring indices, from the end."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n // 2

    def __iter__(self):
        for start in range(self.n - 2, -1, -2):
            yield [start, start + 1]


class _EpochPairBatches(_PairBatches):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


class _LoaderWithExtras(DataLoader):
    def __init__(self, dataset, *args, tag: str = "", **kwargs) -> None:
        super().__init__(dataset, *args, **kwargs)
        self.tag = tag


def _identity_collate(batch):
    return batch


def _ranks(dataloader: DataLoader, world_size: int) -> list[list[int]]:
    """The indices each rank's copy of ``dataloader`` yields, flattened."""
    shares = []
    for rank in range(world_size):
        loader = with_distributed_sampler(dataloader, num_replicas=world_size, rank=rank)
        shares.append([int(i) for batch in loader for i in batch])
    return shares


# -- choosing the distributed sampler -----------------------------------------------------------------


def test_random_sampler_becomes_a_shuffling_distributed_sampler():
    loader = with_distributed_sampler(DataLoader(_Range(8), shuffle=True), num_replicas=2, rank=1)
    assert isinstance(loader.sampler, DistributedSampler)
    assert loader.sampler.shuffle is True
    assert (loader.sampler.num_replicas, loader.sampler.rank) == (2, 1)


def test_sequential_sampler_becomes_a_non_shuffling_distributed_sampler():
    loader = with_distributed_sampler(DataLoader(_Range(8)), num_replicas=2, rank=0)
    assert isinstance(loader.sampler, DistributedSampler)
    assert loader.sampler.shuffle is False


def test_distributed_sampler_is_seeded_with_the_global_seed(monkeypatch):
    monkeypatch.setenv("FABRIC_GLOBAL_SEED", "123")
    loader = with_distributed_sampler(DataLoader(_Range(8), shuffle=True), num_replicas=2, rank=0)
    assert loader.sampler.seed == 123


def test_batch_sampler_is_rebuilt_around_the_distributed_sampler():
    original = DataLoader(_Range(8), batch_size=3, drop_last=True)
    loader = with_distributed_sampler(original, num_replicas=2, rank=0)
    assert type(loader.batch_sampler) is BatchSampler
    assert loader.batch_sampler.sampler is loader.sampler
    assert (loader.batch_sampler.batch_size, loader.batch_sampler.drop_last) == (3, True)


def test_sequential_shares_of_a_divisible_dataset_are_disjoint_and_cover_it():
    shares = _ranks(DataLoader(_Range(12), batch_size=2), world_size=3)
    assert [len(s) for s in shares] == [4, 4, 4]
    assert sorted(i for share in shares for i in share) == list(range(12))


def test_shuffled_shares_of_a_divisible_dataset_are_disjoint_and_cover_it():
    shares = _ranks(DataLoader(_Range(12), batch_size=2, shuffle=True), world_size=3)
    assert sorted(i for share in shares for i in share) == list(range(12))
    assert shares[0] != [0, 3, 6, 9]


def test_shares_of_an_indivisible_dataset_are_padded_to_equal_length_and_cover_it():
    shares = _ranks(DataLoader(_Range(10), batch_size=1), world_size=4)
    assert [len(s) for s in shares] == [3, 3, 3, 3]
    assert set().union(*shares) == set(range(10))


def test_custom_sampler_is_wrapped_not_replaced():
    sampler = _Reversed(8)
    loader = with_distributed_sampler(DataLoader(_Range(8), sampler=sampler), num_replicas=2, rank=0)
    assert isinstance(loader.sampler, DistributedSamplerWrapper)
    assert loader.sampler.sampler is sampler


def test_wrapped_custom_sampler_keeps_its_order_on_each_rank():
    shares = _ranks(DataLoader(_Range(8), sampler=_Reversed(8), batch_size=2), world_size=2)
    assert shares == [[7, 5, 3, 1], [6, 4, 2, 0]]


def test_wrapped_custom_sampler_pads_an_indivisible_order_from_its_start():
    shares = _ranks(DataLoader(_Range(5), sampler=_Reversed(5), batch_size=1), world_size=2)
    assert shares == [[4, 2, 0], [3, 1, 4]]


def test_weighted_random_sampler_is_wrapped_with_its_length_split():
    sampler = WeightedRandomSampler([1.0] * 10, num_samples=10)
    loader = with_distributed_sampler(DataLoader(_Range(10), sampler=sampler), num_replicas=2, rank=1)
    assert isinstance(loader.sampler, DistributedSamplerWrapper)
    assert len(list(loader)) == 5


def test_subclass_of_random_sampler_is_wrapped_not_replaced():
    class _MyRandom(RandomSampler):
        pass

    sampler = _MyRandom(_Range(6))
    loader = with_distributed_sampler(DataLoader(_Range(6), sampler=sampler), num_replicas=2, rank=0)
    assert isinstance(loader.sampler, DistributedSamplerWrapper)
    assert loader.sampler.sampler is sampler


def test_custom_batch_sampler_is_wrapped_and_its_batches_split_among_ranks():
    batch_sampler = _PairBatches(8)
    loaders = [
        with_distributed_sampler(DataLoader(_Range(8), batch_sampler=batch_sampler), num_replicas=2, rank=r)
        for r in range(2)
    ]
    assert isinstance(loaders[0].batch_sampler, DistributedSamplerWrapper)
    assert loaders[0].batch_sampler.sampler is batch_sampler
    assert [b.tolist() for b in loaders[0]] == [[6, 7], [2, 3]]
    assert [b.tolist() for b in loaders[1]] == [[4, 5], [0, 1]]


def test_distributed_sampler_wrapper_rejects_a_sampler_without_length():
    class _Endless(Sampler):
        def __iter__(self):
            while True:
                yield 0

    with pytest.raises(TypeError, match=r"_Endless has no len\(\).*use_distributed_sampler=False"):
        DistributedSamplerWrapper(_Endless(), num_replicas=2, rank=0)


@pytest.mark.parametrize("rank", [-1, 2, 5])
def test_distributed_sampler_wrapper_rejects_a_rank_outside_the_replicas(rank):
    with pytest.raises(ValueError, match=rf"rank={rank} must lie in \[0, 2\)"):
        DistributedSamplerWrapper(_Reversed(4), num_replicas=2, rank=rank)


def test_distributed_sampler_wrapper_with_drop_last_truncates_to_equal_shares():
    wrappers = [DistributedSamplerWrapper(_Reversed(5), 2, rank, drop_last=True) for rank in range(2)]
    assert [list(w) for w in wrappers] == [[4, 2], [3, 1]]


# -- what survives the replacement --------------------------------------------------------------------


def test_loader_settings_survive_the_distributed_sampler():
    original = DataLoader(
        _Range(9), batch_size=4, drop_last=True, num_workers=2, collate_fn=_identity_collate, pin_memory=False
    )
    loader = with_distributed_sampler(original, num_replicas=2, rank=0)
    assert loader.batch_size == 4
    assert loader.drop_last is True
    assert loader.num_workers == 2
    assert loader.collate_fn is _identity_collate
    assert loader.dataset is original.dataset


def test_dataloader_subclass_and_its_extra_attributes_survive():
    original = _LoaderWithExtras(_Range(8), batch_size=2, tag="train")
    loader = with_distributed_sampler(original, num_replicas=2, rank=0)
    assert type(loader) is _LoaderWithExtras
    assert loader.tag == "train"
    assert [b.tolist() for b in loader] == [[0, 2], [4, 6]]


def test_original_loader_is_not_mutated():
    original = DataLoader(_Range(8), batch_size=2, shuffle=True)
    sampler, batch_sampler = original.sampler, original.batch_sampler
    with_distributed_sampler(original, num_replicas=2, rank=1)
    assert original.sampler is sampler
    assert original.batch_sampler is batch_sampler
    assert sorted(i for b in original for i in b.tolist()) == list(range(8))


def test_replaced_loader_can_still_be_iterated_twice():
    loader = with_distributed_sampler(DataLoader(_Range(4), batch_size=1), num_replicas=2, rank=0)
    assert [b.item() for b in loader] == [0, 2]
    assert [b.item() for b in loader] == [0, 2]


def test_loader_with_a_wrapped_custom_batch_sampler_needs_none():
    original = DataLoader(_Range(8), batch_sampler=_PairBatches(8))
    loader = with_distributed_sampler(original, num_replicas=2, rank=0)
    assert needs_distributed_sampler(loader) is False


def test_iterable_dataset_loader_needs_no_distributed_sampler():
    assert needs_distributed_sampler(DataLoader(_Stream())) is False


def test_map_style_loader_needs_a_distributed_sampler():
    assert needs_distributed_sampler(DataLoader(_Range(4), shuffle=True)) is True


def test_loader_with_a_distributed_sampler_needs_none():
    sampler = DistributedSampler(_Range(4), num_replicas=2, rank=0)
    assert needs_distributed_sampler(DataLoader(_Range(4), sampler=sampler)) is False


def test_already_replaced_loader_needs_none():
    loader = with_distributed_sampler(DataLoader(_Range(4), sampler=_Reversed(4)), num_replicas=2, rank=0)
    assert needs_distributed_sampler(loader) is False


# -- epochs -------------------------------------------------------------------------------------------


def test_fabric_loader_sets_the_epoch_0_1_2_on_successive_passes():
    sampler = _Reversed(4)
    wrapped = _FabricDataLoader(DataLoader(_Range(4), sampler=sampler))
    for _ in range(3):
        list(wrapped)
    assert sampler.epochs == [0, 1, 2]


def test_fabric_loader_forwards_the_epoch_through_the_wrapper_to_a_custom_sampler():
    sampler = _Reversed(4)
    loader = with_distributed_sampler(DataLoader(_Range(4), sampler=sampler), num_replicas=2, rank=0)
    wrapped = _FabricDataLoader(loader)
    for _ in range(3):
        list(wrapped)
    assert sampler.epochs == [0, 1, 2]
    assert loader.sampler.epoch == 2


def test_fabric_loader_sets_the_epoch_once_per_pass_on_a_wrapped_custom_batch_sampler():
    batch_sampler = _EpochPairBatches(8)
    original = DataLoader(_Range(8), batch_sampler=batch_sampler)
    wrapped = _FabricDataLoader(with_distributed_sampler(original, num_replicas=2, rank=0))
    for _ in range(3):
        list(wrapped)
    assert batch_sampler.epochs == [0, 1, 2]


def test_distributed_sampler_reshuffles_each_epoch():
    loader = with_distributed_sampler(DataLoader(_Range(32), shuffle=True), num_replicas=2, rank=0)
    wrapped = _FabricDataLoader(loader)
    epoch0 = [b.item() for b in wrapped]
    epoch1 = [b.item() for b in wrapped]
    assert epoch0 != epoch1


def test_same_epoch_gives_the_same_order():
    def first_epoch():
        loader = with_distributed_sampler(DataLoader(_Range(32), shuffle=True), num_replicas=2, rank=0)
        return [b.item() for b in _FabricDataLoader(loader)]

    assert first_epoch() == first_epoch()


def test_set_sampler_epoch_reaches_the_sampler_inside_a_batch_sampler():
    sampler = _Reversed(4)
    set_sampler_epoch(DataLoader(_Range(4), batch_sampler=BatchSampler(sampler, 2, False)), 5)
    assert sampler.epochs == [5]


def test_set_sampler_epoch_calls_a_shared_sampler_once():
    sampler = _Reversed(4)
    set_sampler_epoch(DataLoader(_Range(4), sampler=sampler, batch_size=2), 3)
    assert sampler.epochs == [3]


# -- the Fabric loader wrapper -------------------------------------------------------------------------


def test_fabric_loader_without_device_yields_the_loaders_own_batches():
    batches = [object(), object()]
    loader = DataLoader(_Range(2), batch_size=1, collate_fn=lambda items: batches[items[0]])
    assert list(_FabricDataLoader(loader, device=None)) == batches
    assert all(a is b for a, b in zip(_FabricDataLoader(loader), batches))


def test_fabric_loader_len_passes_through():
    assert len(_FabricDataLoader(DataLoader(_Range(10), batch_size=3))) == 4


def test_fabric_loader_attributes_pass_through():
    dataset = _Range(6)
    wrapped = _FabricDataLoader(DataLoader(dataset, batch_size=3))
    assert wrapped.batch_size == 3
    assert wrapped.dataset is dataset


def test_fabric_loader_with_a_device_moves_tensors_there():
    wrapped = _FabricDataLoader(DataLoader(_Range(2), batch_size=2), device=torch.device("cpu"))
    (batch,) = list(wrapped)
    assert batch.device == torch.device("cpu")
    assert batch.tolist() == [0, 1]


# -- worker seeding -----------------------------------------------------------------------------------


def test_worker_seeding_installs_the_worker_init_function(monkeypatch):
    monkeypatch.setenv("FABRIC_SEED_WORKERS", "1")
    original = DataLoader(_Range(4), num_workers=2)
    loader = with_worker_seeding(original, rank=3)
    assert isinstance(loader.worker_init_fn, partial)
    assert loader.worker_init_fn.func is worker_init_function
    assert loader.worker_init_fn.keywords == {"rank": 3}
    assert original.worker_init_fn is None


@pytest.mark.parametrize("value", [None, "0", "true"])
def test_worker_seeding_needs_fabric_seed_workers_set_to_1(monkeypatch, value):
    if value is not None:
        monkeypatch.setenv("FABRIC_SEED_WORKERS", value)
    loader = DataLoader(_Range(4), num_workers=2)
    assert with_worker_seeding(loader, rank=0) is loader
    assert loader.worker_init_fn is None


def test_worker_seeding_leaves_a_loader_without_workers_alone(monkeypatch):
    monkeypatch.setenv("FABRIC_SEED_WORKERS", "1")
    loader = DataLoader(_Range(4), num_workers=0)
    assert with_worker_seeding(loader, rank=0) is loader


def test_worker_seeding_keeps_the_users_worker_init_fn(monkeypatch):
    monkeypatch.setenv("FABRIC_SEED_WORKERS", "1")

    def mine(worker_id):
        pass

    loader = with_worker_seeding(DataLoader(_Range(4), num_workers=2, worker_init_fn=mine), rank=0)
    assert loader.worker_init_fn is mine


class _RandomDraws(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return get_worker_info().id, torch.rand(1).item(), random.random()


def _draws_in_workers(seed: int, rank: int = 0) -> dict[int, list[tuple[float, float]]]:
    fabric_core.seed_everything(seed, workers=True, verbose=False)
    loader = DataLoader(_RandomDraws(), batch_size=None, num_workers=2, multiprocessing_context="fork")
    loader = with_worker_seeding(loader, rank=rank)
    draws: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    for worker, torch_draw, python_draw in loader:
        draws[worker].append((torch_draw, python_draw))
    return draws


def test_seeded_workers_draw_different_numbers():
    draws = _draws_in_workers(7)
    assert draws[0] and draws[1]
    assert draws[0][0][0] != draws[1][0][0]
    assert draws[0][0][1] != draws[1][0][1]


def test_seeded_workers_draw_the_same_numbers_in_a_repeated_run():
    assert _draws_in_workers(7) == _draws_in_workers(7)


def test_seeded_workers_of_different_ranks_draw_different_numbers():
    rank0, rank1 = _draws_in_workers(7, rank=0), _draws_in_workers(7, rank=1)
    assert rank0[0] != rank1[0]
    assert rank0[1] != rank1[1]


# -- Fabric.setup_dataloaders -------------------------------------------------------------------------


def test_setup_dataloaders_returns_one_loader_for_one_input():
    wrapped = fabric_core.Fabric(accelerator="cpu").setup_dataloaders(DataLoader(_Range(4)))
    assert isinstance(wrapped, _FabricDataLoader)


def test_setup_dataloaders_returns_a_list_for_several_inputs():
    fabric = fabric_core.Fabric(accelerator="cpu")
    wrapped = fabric.setup_dataloaders(DataLoader(_Range(4)), DataLoader(_Range(2)))
    assert isinstance(wrapped, list)
    assert [len(w) for w in wrapped] == [4, 2]
    assert all(isinstance(w, _FabricDataLoader) for w in wrapped)


def test_setup_dataloaders_on_one_cpu_keeps_the_sampling_and_the_batches():
    batches = [object(), object()]
    loader = DataLoader(_Range(2), batch_size=1, collate_fn=lambda items: batches[items[0]])
    wrapped = fabric_core.Fabric(accelerator="cpu").setup_dataloaders(loader)
    assert type(wrapped.sampler) is SequentialSampler
    assert all(a is b for a, b in zip(wrapped, batches))


@pytest.mark.parametrize("bad", [[1, 2, 3], _Range(3), None])
def test_setup_dataloaders_rejects_what_is_not_a_dataloader_naming_its_type(bad):
    with pytest.raises(TypeError, match=rf"expects torch.utils.data.DataLoader.*got {type(bad).__name__}"):
        fabric_core.Fabric(accelerator="cpu").setup_dataloaders(bad)


def test_setup_dataloaders_rejects_a_loader_already_set_up():
    fabric = fabric_core.Fabric(accelerator="cpu")
    wrapped = fabric.setup_dataloaders(DataLoader(_Range(4)))
    with pytest.raises(ValueError, match="already set up"):
        fabric.setup_dataloaders(wrapped)


def test_setup_dataloaders_without_a_loader_is_rejected():
    with pytest.raises(ValueError, match="at least one DataLoader"):
        fabric_core.Fabric(accelerator="cpu").setup_dataloaders()
