"""``ModelParallelStrategy``: data x tensor parallelism over a 2-D ``DeviceMesh``, with your ``parallelize_fn``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

import torch
from torch.nn import Module

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.precision.precision import Precision
from fabric_core.utilities import distributed as collectives
from fabric_fsdp.sharded import ShardedStrategy

#: The names of the mesh's dimensions, outer (data parallel) first.
MESH_DIMS = ("data_parallel", "tensor_parallel")


def _check_size(name: str, value: Any) -> int | Literal["auto"]:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"ModelParallelStrategy({name}={value!r}) must be a positive int or 'auto'.")


class ModelParallelStrategy(ShardedStrategy):
    """Your own parallelisation over a ``(data_parallel, tensor_parallel)`` ``DeviceMesh``.

    ``parallelize_fn(model, device_mesh)`` applies tensor parallelism on ``device_mesh["tensor_parallel"]``
    (``torch.distributed.tensor.parallel.parallelize_module``) and FSDP on
    ``device_mesh["data_parallel"]`` (``fully_shard``), and returns the model. Fabric runs it in
    ``setup``/``setup_module``; everything else (optimizers, no_backward_sync, clipping, checkpoints)
    works as with :class:`~fabric_fsdp.FSDPStrategy`::

        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        def parallelize(model, device_mesh):
            plan = {"up": ColwiseParallel(), "down": RowwiseParallel()}
            parallelize_module(model, device_mesh["tensor_parallel"], plan)
            fully_shard(model, mesh=device_mesh["data_parallel"])
            return model

        fabric = Fabric(strategy=ModelParallelStrategy(parallelize, tensor_parallel_size=2), devices=4)

    Each data-parallel rank reads its own share of the data; the tensor-parallel ranks of one group
    read the same batches (``fabric.setup_dataloaders`` arranges it). The precision flag works as with
    FSDP, except that a mixed-precision policy for ``fully_shard`` is yours to pass in ``parallelize_fn``
    (``fabric.strategy.precision.mixed_precision_policy`` is the one FSDP would use); forward always
    runs under autocast in the ``-mixed`` modes.

    Args:
        parallelize_fn: ``(model, device_mesh) -> model``.
        data_parallel_size: the size of the mesh's first dimension; ``"auto"``: the number of nodes,
            or the world size divided by ``tensor_parallel_size``.
        tensor_parallel_size: the size of its second dimension; ``"auto"``: the devices per node, or the
            world size divided by ``data_parallel_size``.
        save_distributed_checkpoint: ``True`` (default): ``fabric.save`` writes a sharded directory;
            ``False``: one full file gathered on rank 0.
        process_group_backend, timeout, start_method: as for DDP.
    """

    def __init__(
        self,
        parallelize_fn: Callable[[Module, Any], Module] | None = None,
        data_parallel_size: int | Literal["auto"] = "auto",
        tensor_parallel_size: int | Literal["auto"] = "auto",
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = collectives.DEFAULT_TIMEOUT,
        *,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision: Precision | None = None,
        start_method: Literal["popen", "spawn", "fork", "forkserver"] = "popen",
    ) -> None:
        if parallelize_fn is None:
            raise TypeError(
                "ModelParallelStrategy needs parallelize_fn, the function that spreads your model over the device "
                "mesh; the name 'model_parallel' alone cannot say how. Pass "
                "Fabric(strategy=ModelParallelStrategy(parallelize_fn=my_parallelize)), where "
                "my_parallelize(model, device_mesh) returns the model."
            )
        if not callable(parallelize_fn):
            raise TypeError(
                f"ModelParallelStrategy(parallelize_fn={parallelize_fn!r}) must be a callable: "
                "(model, device_mesh) -> model."
            )
        if not isinstance(save_distributed_checkpoint, bool):
            raise TypeError(
                f"ModelParallelStrategy(save_distributed_checkpoint={save_distributed_checkpoint!r}) must be a bool."
            )
        self._parallelize_fn = parallelize_fn
        self._data_parallel_size = _check_size("data_parallel_size", data_parallel_size)
        self._tensor_parallel_size = _check_size("tensor_parallel_size", tensor_parallel_size)
        self._save_distributed_checkpoint = save_distributed_checkpoint
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision=precision,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
        )

    @property
    def _full_checkpoints(self) -> bool:
        return not self._save_distributed_checkpoint

    @property
    def mesh_shape(self) -> tuple[int, int]:
        """``(data_parallel_size, tensor_parallel_size)`` with ``"auto"`` resolved."""
        world_size = self.num_nodes * self.num_processes
        dp, tp = self._data_parallel_size, self._tensor_parallel_size
        if dp == "auto" and tp == "auto":
            return self.num_nodes, self.num_processes
        if dp == "auto":
            return max(world_size // tp, 1), tp  # type: ignore[operator]
        if tp == "auto":
            return dp, max(world_size // dp, 1)
        return dp, tp  # type: ignore[return-value]

    def connect(self, **resolved: Any) -> None:
        super().connect(**resolved)
        world_size = self.num_nodes * self.num_processes
        dp, tp = self.mesh_shape
        if self.num_processes and dp * tp != world_size:
            raise ValueError(
                f"ModelParallelStrategy: data_parallel_size x tensor_parallel_size = {dp} x {tp} = {dp * tp}, but the "
                f"run has {world_size} processes ({self.num_nodes} node(s) x {self.num_processes} device(s)). Choose "
                f"sizes that multiply to {world_size}, or leave one of them 'auto'."
            )

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        # The mesh is row-major: ranks dp * tp_size ... dp * tp_size + tp_size - 1 form one tensor-parallel group.
        dp, tp = self.mesh_shape
        return {"num_replicas": dp, "rank": self.global_rank // tp}

    def _create_device_mesh(self) -> Any:
        from torch.distributed.device_mesh import init_device_mesh

        return init_device_mesh(self.root_device.type, self.mesh_shape, mesh_dim_names=MESH_DIMS)

    def _parallelize(self, module: Module) -> Module:
        return self._parallelize_fn(module, self.device_mesh)

    def __repr__(self) -> str:
        dp, tp = self.mesh_shape
        return (
            f"{type(self).__name__}(data_parallel_size={dp}, tensor_parallel_size={tp}, "
            f"save_distributed_checkpoint={self._save_distributed_checkpoint}, backend={self.process_group_backend!r})"
        )
