"""DataParallel: one process drives several GPUs, splitting each batch across them."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor
from torch.nn import DataParallel, Module

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.precision.precision import Precision
from fabric_core.strategies.strategy import Strategy
from fabric_core.utilities.distributed import resolve_reduce_op


def _check_devices(devices: list[torch.device]) -> list[torch.device]:
    devices = [torch.device(device) for device in devices]
    if not devices or any(device.type != "cuda" or device.index is None for device in devices):
        raise ValueError(
            f"strategy='dp' splits each batch over CUDA GPUs, but got devices {[str(d) for d in devices]}. Use "
            "accelerator='cuda' (or 'gpu') with devices such as 2 or [0, 1]; on the CPU use strategy='ddp'."
        )
    return devices


class DataParallelStrategy(Strategy):
    """``torch.nn.DataParallel`` over the selected GPUs, in a single process.

    Each forward scatters the batch over the GPUs, runs a replica of the model on each and gathers the
    outputs on the first GPU, the root device, where the batches are moved and the loss is computed.
    Nothing is launched and the collectives return their input: the world is this one process. DDP
    (``strategy="ddp"``) is faster on several GPUs; ``dp`` helps where starting processes is not an
    option.

    Example::

        fabric = Fabric(accelerator="cuda", strategy="dp", devices=2)
        model, optimizer = fabric.setup(model, optimizer)  # model wrapped in DataParallel on cuda:0, cuda:1

    Args:
        parallel_devices: the GPUs, as ``torch.device("cuda", i)``; ``Fabric(devices=...)`` fills them in.
    """

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision: Precision | None = None,
    ) -> None:
        super().__init__(accelerator=accelerator, checkpoint_io=checkpoint_io, precision=precision)
        self.parallel_devices = _check_devices(parallel_devices) if parallel_devices is not None else None

    def connect(
        self,
        *,
        parallel_devices: list[torch.device] | None = None,
        num_nodes: int | None = None,
        **resolved: Any,
    ) -> None:
        super().connect(**resolved)
        if num_nodes is not None and num_nodes != 1:
            raise ValueError(
                f"strategy='dp' runs in one process on one machine, but num_nodes={num_nodes} was requested. Use "
                "strategy='ddp' to train on several machines."
            )
        if self.parallel_devices is None and parallel_devices is not None:
            self.parallel_devices = _check_devices(parallel_devices)

    @property
    def root_device(self) -> torch.device:
        if not self.parallel_devices:
            raise RuntimeError("DataParallelStrategy has no devices yet: it must be set up through Fabric(...).")
        return self.parallel_devices[0]

    @property
    def device_ids(self) -> list[int]:
        """The indices of the GPUs the batch is split over, the root device first."""
        return [device.index for device in self.parallel_devices or []]

    # -- the model ---------------------------------------------------------------------------------

    def setup_module(self, module: Module) -> Module:
        return DataParallel(module, device_ids=self.device_ids)

    def no_backward_sync(self, module: Module, enabled: bool) -> AbstractContextManager | None:
        # The replicas' gradients are summed onto the root module during backward itself: there is no
        # separate synchronisation to skip. None makes Fabric say so.
        return None

    def get_module_state_dict(self, module: Module) -> dict[str, Any]:
        if isinstance(module, DataParallel):
            module = module.module
        return module.state_dict()

    def load_module_state_dict(self, module: Module, state_dict: dict[str, Any], strict: bool = True) -> None:
        if isinstance(module, DataParallel):
            module = module.module
        module.load_state_dict(state_dict, strict=strict)

    # -- collectives: one process ------------------------------------------------------------------

    def all_gather(self, tensor: Tensor, group: Any | None = None, sync_grads: bool = False) -> Tensor:
        return tensor

    def all_reduce(self, tensor: Tensor, group: Any | None = None, reduce_op: Any | None = "mean") -> Tensor:
        resolve_reduce_op(reduce_op)  # an unknown op is a bug in one process as in many
        return tensor

    def barrier(self, name: str | None = None) -> None:
        pass

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if src != 0:
            raise ValueError(f"broadcast(src={src}): strategy='dp' runs one process, which is rank 0.")
        return obj

    def __repr__(self) -> str:
        return f"DataParallelStrategy(device_ids={self.device_ids})"
