"""FSDPStrategy and ModelParallelStrategy pass fabric-core's strategy conformance kit (one and two processes)."""

from __future__ import annotations

import functools
from typing import Any

import torch

from fabric_core.testing import StrategyConformance
from fabric_fsdp import FSDPStrategy, ModelParallelStrategy


def _data_parallel_only(model, device_mesh):
    from torch.distributed.fsdp import fully_shard

    return fully_shard(model, mesh=device_mesh["data_parallel"])


class ShardedConformance(StrategyConformance):
    def test_no_backward_sync_is_a_context_manager_around_backward(self, fabric: Any) -> None:
        # Replaces the kit's check: FSDP2 accumulates the unsynchronised gradients unsharded inside FSDP,
        # so the sharded parameters get their .grad at the next synchronised backward, not before.
        model, _ = self._model_and_optimizer(fabric)
        inputs, target = self._batch(fabric)
        with fabric.no_backward_sync(model):
            fabric.backward(torch.nn.functional.mse_loss(model(inputs), target))
        assert all(p.grad is None for p in model.parameters())
        fabric.backward(torch.nn.functional.mse_loss(model(inputs), target))
        assert all(p.grad is not None for p in model.parameters())


class TestFSDPStrategy(ShardedConformance):
    strategy_factory = FSDPStrategy


class TestFSDPStrategyWithFullCheckpoints(ShardedConformance):
    strategy_factory = functools.partial(FSDPStrategy, state_dict_type="full")


class TestModelParallelStrategy(ShardedConformance):
    # tensor_parallel_size=1: the mesh is data parallel only (one process, then two), as the function shards.
    strategy_factory = functools.partial(ModelParallelStrategy, _data_parallel_only, tensor_parallel_size=1)
