"""The DataParallel strategy's own behaviour, checked without a GPU."""

from __future__ import annotations

import pytest
import torch
from torch.nn import DataParallel

from fabric_cuda import dp as dp_module
from fabric_cuda.dp import DataParallelStrategy

TWO_GPUS = [torch.device("cuda", 0), torch.device("cuda", 1)]


@pytest.fixture
def strategy() -> DataParallelStrategy:
    strategy = DataParallelStrategy()
    strategy.connect(parallel_devices=TWO_GPUS, num_nodes=1)
    return strategy


def test_the_root_device_is_the_first_gpu(strategy):
    assert strategy.root_device == torch.device("cuda", 0)
    assert strategy.device_ids == [0, 1]


def test_it_is_one_process_that_needs_no_launch(strategy):
    assert not strategy.needs_launch
    assert (strategy.world_size, strategy.global_rank, strategy.local_rank) == (1, 0, 0)
    assert strategy.distributed_sampler_kwargs is None  # DataParallel splits each batch itself


def test_devices_given_to_the_constructor_win_over_resolution():
    strategy = DataParallelStrategy(parallel_devices=[torch.device("cuda", 3)])
    strategy.connect(parallel_devices=TWO_GPUS)
    assert strategy.device_ids == [3]


def test_without_devices_the_root_device_is_an_error_saying_how_to_set_it_up():
    with pytest.raises(RuntimeError, match=r"must be set up through Fabric\(...\)"):
        _ = DataParallelStrategy().root_device


@pytest.mark.parametrize("devices", [[torch.device("cpu")], [torch.device("cuda")], []], ids=repr)
def test_devices_that_are_not_indexed_gpus_are_rejected(devices):
    with pytest.raises(ValueError, match="strategy='dp' splits each batch over CUDA GPUs"):
        DataParallelStrategy(parallel_devices=devices)


def test_setup_module_wraps_in_data_parallel_over_the_gpus(strategy, monkeypatch):
    calls = []

    class RecordingDataParallel(DataParallel):
        def __init__(self, module, device_ids=None):
            calls.append(device_ids)
            super().__init__(module, device_ids=[] if not torch.cuda.is_available() else device_ids)

    monkeypatch.setattr(dp_module, "DataParallel", RecordingDataParallel)
    wrapped = strategy.setup_module(torch.nn.Linear(2, 1))
    assert isinstance(wrapped, DataParallel)
    assert calls == [[0, 1]]


def test_module_state_dict_has_no_wrapper_prefix_and_loads_back(strategy):
    wrapped = DataParallel(torch.nn.Linear(2, 1), device_ids=[])  # on the CPU: a plain wrapper
    state = strategy.get_module_state_dict(wrapped)
    assert set(state) == {"weight", "bias"}
    fresh = DataParallel(torch.nn.Linear(2, 1), device_ids=[])
    strategy.load_module_state_dict(fresh, state)
    assert torch.equal(fresh.module.weight, wrapped.module.weight)


def test_no_backward_sync_is_unsupported_so_fabric_warns(strategy):
    assert strategy.no_backward_sync(torch.nn.Linear(2, 1), enabled=True) is None


def test_collectives_in_one_process_return_their_input(strategy):
    tensor = torch.tensor([1.0, 2.0])
    assert strategy.all_reduce(tensor, reduce_op="sum") is tensor
    assert strategy.all_gather(tensor) is tensor
    assert strategy.broadcast({"a": 1}) == {"a": 1}
    assert strategy.reduce_boolean_decision(False) is False
    strategy.barrier("checkpoint")


def test_an_unknown_reduce_op_is_still_an_error(strategy):
    with pytest.raises(ValueError, match="Unknown reduce_op 'median'"):
        strategy.all_reduce(torch.tensor(1.0), reduce_op="median")


def test_broadcast_from_another_rank_is_an_error(strategy):
    with pytest.raises(ValueError, match=r"broadcast\(src=1\): strategy='dp' runs one process"):
        strategy.broadcast(1, src=1)


def test_repr_names_the_gpus(strategy):
    assert repr(strategy) == "DataParallelStrategy(device_ids=[0, 1])"
