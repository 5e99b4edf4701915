"""The data helpers Lightning users import: AttributeDict, has_len, sized_len, has_iterable_dataset, num_workers."""

from __future__ import annotations

import copy
import os
import pickle
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from fabric_core.utilities import data
from fabric_core.utilities.data import (
    AttributeDict,
    has_iterable_dataset,
    has_len,
    sized_len,
    suggested_max_num_workers,
)
from fabric_core.utilities.rank_zero import rank_zero_state


class Stream(IterableDataset):
    def __iter__(self):
        yield from range(3)


class SizedStream(Stream):
    def __len__(self):
        return 3


class Unsized:
    def __len__(self):
        raise NotImplementedError


# -- AttributeDict -------------------------------------------------------------------------------------


def test_attribute_dict_reads_and_writes_keys_as_attributes():
    state = AttributeDict(step=0)
    state.step += 1
    state.model = "m"
    assert state == {"step": 1, "model": "m"}
    assert state["model"] == "m"


def test_attribute_dict_deletes_keys_as_attributes():
    state = AttributeDict(a=1, b=2)
    del state.a
    assert state == {"b": 2}


def test_attribute_dict_deleting_a_missing_key_is_a_key_error_as_in_lightning():
    with pytest.raises(KeyError, match="missing"):
        del AttributeDict().missing


def test_attribute_dict_reading_a_missing_key_is_an_attribute_error():
    state = AttributeDict(a=1)
    with pytest.raises(AttributeError, match="'AttributeDict' object has no attribute or key 'b'"):
        state.b  # noqa: B018
    assert not hasattr(state, "b")
    assert getattr(state, "b", 5) == 5


def test_attribute_dict_repr_lists_sorted_keys_with_aligned_values():
    state = AttributeDict(model="Linear", iter_num=1, a=[1])
    assert repr(state) == '"a":        [1]\n"iter_num": 1\n"model":    Linear'


def test_an_empty_attribute_dict_has_an_empty_repr():
    assert repr(AttributeDict()) == ""


def test_attribute_dict_survives_pickle_and_deepcopy():
    state = AttributeDict(weights=torch.ones(2), step=3)
    for clone in (pickle.loads(pickle.dumps(state)), copy.deepcopy(state)):
        assert type(clone) is AttributeDict
        assert clone.step == 3
        assert torch.equal(clone.weights, torch.ones(2))


def test_attribute_dict_round_trips_through_torch_save(tmp_path):
    torch.save(AttributeDict(step=7), tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=False)
    assert type(loaded) is AttributeDict and loaded.step == 7


# -- sized_len, has_len, has_iterable_dataset ----------------------------------------------------------


def test_sized_len_gives_the_length_or_none():
    assert sized_len([1, 2, 3]) == 3
    assert sized_len(DataLoader(range(10), batch_size=4)) == 3
    assert sized_len(iter([1])) is None
    assert sized_len(Unsized()) is None
    assert sized_len(DataLoader(Stream())) is None


def test_has_len_says_whether_len_works():
    assert has_len(DataLoader(range(4))) is True
    assert has_len(DataLoader(Stream())) is False
    assert has_len(Unsized()) is False


def test_has_len_warns_about_a_length_of_zero():
    with pytest.warns(UserWarning, match="DataLoader has length 0"):
        assert has_len(DataLoader([])) is True


def test_has_len_warns_about_an_iterable_dataset_with_a_length():
    with pytest.warns(UserWarning, match="IterableDataset of this dataloader defines __len__"):
        assert has_len(DataLoader(SizedStream())) is True


def test_has_len_warns_on_rank_zero_only():
    rank_zero_state.rank = 1  # the root conftest restores it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert has_len(DataLoader([])) is True


def test_has_iterable_dataset():
    assert has_iterable_dataset(DataLoader(Stream())) is True
    assert has_iterable_dataset(DataLoader(range(3))) is False
    assert has_iterable_dataset(object()) is False


# -- suggested_max_num_workers -------------------------------------------------------------------------


@pytest.fixture
def cpus(monkeypatch):
    def use(count: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(count)), raising=False)

    return use


@pytest.mark.parametrize(
    ("cpu_count", "local_world_size", "expected"),
    [(16, 1, 15), (16, 2, 7), (16, 4, 3), (16, 8, 1), (16, 16, 1), (4, 8, 1), (1, 1, 1), (10, 3, 2)],
)
def test_suggested_workers_is_each_process_share_of_the_cpus_less_one(cpus, cpu_count, local_world_size, expected):
    cpus(cpu_count)
    assert suggested_max_num_workers(local_world_size) == expected


def test_suggested_workers_counts_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert suggested_max_num_workers(1) == 2


def test_suggested_workers_without_affinity_uses_the_cpu_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert suggested_max_num_workers(2) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert suggested_max_num_workers(1) == 1


@pytest.mark.parametrize("local_world_size", [0, -2])
def test_suggested_workers_refuses_fewer_than_one_process(local_world_size):
    with pytest.raises(ValueError, match=rf"local_world_size={local_world_size}\): expected at least 1"):
        suggested_max_num_workers(local_world_size)


def test_suggested_workers_refuses_a_non_integer():
    with pytest.raises(TypeError, match=r"local_world_size=2.5\): expected an int"):
        suggested_max_num_workers(2.5)  # type: ignore[arg-type]


def test_the_existing_loader_helpers_are_still_there():
    # fabric.py uses these; the new helpers sit beside them
    for name in ("DistributedSamplerWrapper", "with_distributed_sampler", "with_worker_seeding", "set_sampler_epoch"):
        assert callable(getattr(data, name))
