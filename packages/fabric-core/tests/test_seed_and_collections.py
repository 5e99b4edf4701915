"""Seeding every generator of a run, and walking nested collections of tensors."""

from __future__ import annotations

import dataclasses
import os
import random
import re
from collections import OrderedDict, defaultdict, namedtuple

import numpy as np
import pytest
import torch

import fabric_core
from fabric_core.utilities.apply_func import apply_to_collection, move_data_to_device
from fabric_core.utilities.seed import reset_seed, seed_everything, worker_init_function


def _draws() -> tuple[float, float, float]:
    return torch.rand(1).item(), random.random(), float(np.random.rand())


# -- seed_everything ----------------------------------------------------------------------------------


def test_seed_everything_makes_torch_random_and_numpy_reproducible():
    seed_everything(42, verbose=False)
    first = _draws()
    seed_everything(42, verbose=False)
    assert _draws() == first


def test_different_seeds_give_different_draws():
    seed_everything(1, verbose=False)
    first = _draws()
    seed_everything(2, verbose=False)
    second = _draws()
    assert all(a != b for a, b in zip(first, second))


def test_seed_everything_returns_the_seed():
    assert seed_everything(1234, verbose=False) == 1234


def test_seed_everything_exports_the_seed():
    seed_everything(99, verbose=False)
    assert os.environ["FABRIC_GLOBAL_SEED"] == "99"


def test_seed_none_reads_the_exported_seed(monkeypatch):
    monkeypatch.setenv("FABRIC_GLOBAL_SEED", "77")
    assert seed_everything(None, verbose=False) == 77
    first = _draws()
    seed_everything(77, verbose=False)
    assert _draws() == first


def test_seed_none_without_an_exported_seed_uses_0():
    assert seed_everything(verbose=False) == 0
    assert os.environ["FABRIC_GLOBAL_SEED"] == "0"


def test_exported_seed_that_is_not_an_integer_is_rejected_naming_it(monkeypatch):
    monkeypatch.setenv("FABRIC_GLOBAL_SEED", "forty-two")
    with pytest.raises(ValueError, match=r"FABRIC_GLOBAL_SEED='forty-two'.*integer"):
        seed_everything(verbose=False)


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_seeds_at_the_bounds_are_accepted(seed):
    assert seed_everything(seed, verbose=False) == seed


@pytest.mark.parametrize("seed", [-1, 2**32, 10**20])
def test_out_of_range_seed_is_rejected_naming_the_value(seed):
    with pytest.raises(ValueError, match=rf"seed={seed}\).*out of range.*\[0, 4294967295\]"):
        seed_everything(seed, verbose=False)


@pytest.mark.parametrize(("seed", "expected"), [(1.5, 1), ("42", 42), (True, 1), (False, 0), (np.int64(9), 9)])
def test_a_seed_that_int_accepts_is_converted_as_lightning_does(seed, expected):
    assert seed_everything(seed, verbose=False) == expected


@pytest.mark.parametrize(("seed", "error"), [([1], TypeError), ("forty-two", ValueError), ({"seed": 1}, TypeError)])
def test_a_seed_that_int_refuses_is_rejected_naming_the_value(seed, error):
    with pytest.raises(error, match=re.escape(f"seed={seed!r}) needs an integer")):
        seed_everything(seed, verbose=False)


def test_rejected_seed_leaves_the_exported_seed_alone(monkeypatch):
    monkeypatch.setenv("FABRIC_GLOBAL_SEED", "5")
    with pytest.raises(ValueError):
        seed_everything(-3, verbose=False)
    assert os.environ["FABRIC_GLOBAL_SEED"] == "5"


def test_seed_is_logged_when_verbose(caplog):
    with caplog.at_level("INFO", logger="fabric_core"):
        seed_everything(31)
    assert "Seed set to 31" in caplog.text


def test_seed_is_not_logged_when_quiet(caplog):
    with caplog.at_level("INFO", logger="fabric_core"):
        seed_everything(31, verbose=False)
    assert "31" not in caplog.text


def test_module_level_seed_everything_does_not_seed_workers_by_default():
    fabric_core.seed_everything(3, verbose=False)
    assert os.environ["FABRIC_SEED_WORKERS"] == "0"


def test_module_level_seed_everything_seeds_workers_when_asked():
    fabric_core.seed_everything(3, workers=True, verbose=False)
    assert os.environ["FABRIC_SEED_WORKERS"] == "1"


def test_fabric_seed_everything_seeds_workers_by_default():
    assert fabric_core.Fabric.seed_everything(3, verbose=False) == 3
    assert os.environ["FABRIC_SEED_WORKERS"] == "1"


def test_fabric_seed_everything_respects_workers_false():
    fabric_core.Fabric.seed_everything(3, workers=False, verbose=False)
    assert os.environ["FABRIC_SEED_WORKERS"] == "0"


def test_fabric_seed_everything_is_callable_on_an_instance():
    fabric = fabric_core.Fabric(accelerator="cpu")
    assert fabric.seed_everything(8, verbose=False) == 8
    assert os.environ["FABRIC_GLOBAL_SEED"] == "8"


# -- reset_seed ---------------------------------------------------------------------------------------


def test_reset_seed_reapplies_the_exported_seed():
    seed_everything(21, verbose=False)
    first = _draws()
    _draws()
    reset_seed()
    assert _draws() == first


def test_reset_seed_reapplies_the_worker_setting(monkeypatch):
    monkeypatch.setenv("FABRIC_GLOBAL_SEED", "4")
    monkeypatch.setenv("FABRIC_SEED_WORKERS", "1")
    reset_seed()
    assert os.environ["FABRIC_SEED_WORKERS"] == "1"
    assert torch.initial_seed() == 4


def test_reset_seed_without_an_exported_seed_does_nothing():
    torch.manual_seed(555)
    reset_seed()
    assert torch.initial_seed() == 555
    assert "FABRIC_GLOBAL_SEED" not in os.environ


# -- worker_init_function ------------------------------------------------------------------------------


def _worker_draws(worker_id: int, rank: int, base_seed: int = 1000) -> tuple[float, float, float]:
    torch.manual_seed(base_seed + worker_id)  # what the DataLoader does in a worker before calling the hook
    worker_init_function(worker_id, rank=rank)
    return _draws()


def test_worker_init_function_gives_each_worker_its_own_stream():
    assert _worker_draws(0, rank=0) != _worker_draws(1, rank=0)


def test_worker_init_function_gives_each_rank_its_own_stream():
    assert _worker_draws(0, rank=0) != _worker_draws(0, rank=1)


def test_worker_init_function_is_reproducible():
    assert _worker_draws(1, rank=2) == _worker_draws(1, rank=2)


def test_worker_init_function_depends_on_the_base_seed():
    assert _worker_draws(0, rank=0, base_seed=1) != _worker_draws(0, rank=0, base_seed=2)


# -- apply_to_collection ------------------------------------------------------------------------------

Point = namedtuple("Point", ["x", "y"])


@dataclasses.dataclass
class Sample:
    image: torch.Tensor
    label: int
    extras: dict


@dataclasses.dataclass(frozen=True)
class FrozenSample:
    image: torch.Tensor


@dataclasses.dataclass
class CachedSample:
    image: torch.Tensor
    cache: torch.Tensor | None = dataclasses.field(default=None, init=False)


def _double(t: torch.Tensor) -> torch.Tensor:
    return t * 2


def test_apply_to_collection_applies_to_a_bare_element():
    assert torch.equal(apply_to_collection(torch.ones(2), torch.Tensor, _double), torch.full((2,), 2.0))


def test_apply_to_collection_keeps_a_dict():
    out = apply_to_collection({"a": torch.ones(1), "b": "text"}, torch.Tensor, _double)
    assert type(out) is dict
    assert out["a"].item() == 2.0
    assert out["b"] == "text"


def test_apply_to_collection_keeps_an_ordered_dict_and_its_order():
    data = OrderedDict([("z", torch.ones(1)), ("a", torch.ones(1))])
    out = apply_to_collection(data, torch.Tensor, _double)
    assert type(out) is OrderedDict
    assert list(out) == ["z", "a"]
    assert out["z"].item() == 2.0


def test_apply_to_collection_keeps_a_defaultdict_and_its_factory():
    data = defaultdict(list, {"a": torch.ones(1)})
    out = apply_to_collection(data, torch.Tensor, _double)
    assert type(out) is defaultdict
    assert out.default_factory is list
    assert out["a"].item() == 2.0
    assert out["missing"] == []


def test_apply_to_collection_keeps_a_defaultdict_without_a_factory():
    data = defaultdict(None, {"a": torch.ones(1)})
    out = apply_to_collection(data, torch.Tensor, _double)
    assert type(out) is defaultdict
    assert out.default_factory is None
    assert out["a"].item() == 2.0


def test_apply_to_collection_keeps_a_namedtuple():
    out = apply_to_collection(Point(torch.ones(1), 3), torch.Tensor, _double)
    assert type(out) is Point
    assert out.x.item() == 2.0
    assert out.y == 3


def test_apply_to_collection_keeps_a_dataclass():
    out = apply_to_collection(Sample(torch.ones(1), 4, {"mask": torch.ones(1)}), torch.Tensor, _double)
    assert type(out) is Sample
    assert out.image.item() == 2.0
    assert out.label == 4
    assert out.extras["mask"].item() == 2.0


def test_apply_to_collection_keeps_a_frozen_dataclass():
    out = apply_to_collection(FrozenSample(torch.ones(1)), torch.Tensor, _double)
    assert type(out) is FrozenSample
    assert out.image.item() == 2.0


def test_apply_to_collection_does_not_drop_a_dataclass_field_outside_init():
    sample = CachedSample(torch.ones(1))
    sample.cache = torch.full((1,), 5.0)
    out = apply_to_collection(sample, torch.Tensor, _double)
    assert out.image.item() == 2.0
    assert out.cache is not None
    assert out.cache.item() in (5.0, 10.0)


def test_apply_to_collection_does_not_modify_the_input_dataclass():
    sample = Sample(torch.ones(1), 4, {})
    apply_to_collection(sample, torch.Tensor, _double)
    assert sample.image.item() == 1.0


def test_apply_to_collection_keeps_lists_and_tuples():
    out = apply_to_collection([torch.ones(1), (torch.ones(1), "s")], torch.Tensor, _double)
    assert type(out) is list
    assert type(out[1]) is tuple
    assert out[0].item() == 2.0
    assert out[1][0].item() == 2.0
    assert out[1][1] == "s"


def test_apply_to_collection_leaves_other_types_alone():
    marker = object()
    out = apply_to_collection({"m": marker, "n": None, "i": 3, "s": "x"}, torch.Tensor, _double)
    assert out == {"m": marker, "n": None, "i": 3, "s": "x"}


def test_apply_to_collection_passes_extra_arguments():
    out = apply_to_collection([torch.ones(1)], torch.Tensor, torch.mul, 3)
    assert out[0].item() == 3.0


def test_apply_to_collection_matches_a_tuple_of_types():
    out = apply_to_collection([1, 2.5, "s"], (int, float), lambda v: v * 2)
    assert out == [2, 5.0, "s"]


# -- move_data_to_device ------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_move_data_to_device_returns_the_same_tensor_when_already_there(device):
    tensor = torch.ones(2)
    assert move_data_to_device(tensor, device) is tensor


def test_move_data_to_device_keeps_tensors_inside_collections_when_already_there():
    tensor = torch.ones(2)
    out = move_data_to_device({"a": [tensor], "b": Point(tensor, 1)}, "cpu")
    assert out["a"][0] is tensor
    assert out["b"].x is tensor
    assert type(out["b"]) is Point


def test_move_data_to_device_moves_tensors_to_another_device():
    out = move_data_to_device({"a": torch.ones(2)}, "meta")
    assert out["a"].device == torch.device("meta")


def test_move_data_to_device_moves_a_bare_tensor_to_another_device():
    assert move_data_to_device(torch.ones(2), torch.device("meta")).is_meta
