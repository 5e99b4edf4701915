"""One process on one device."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.precision.precision import Precision
from fabric_core.strategies.strategy import Strategy
from fabric_core.utilities.distributed import resolve_reduce_op


class SingleDeviceStrategy(Strategy):
    """Runs in this process on ``device``. Collectives return their input (the world is one process).

    Example::

        fabric = Fabric(strategy=SingleDeviceStrategy(device="cpu"))
    """

    def __init__(
        self,
        device: str | torch.device | None = None,
        accelerator: Accelerator | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision: Precision | None = None,
    ) -> None:
        super().__init__(accelerator=accelerator, checkpoint_io=checkpoint_io, precision=precision)
        self._root_device = torch.device(device) if device is not None else None

    def connect(self, *, parallel_devices: list[torch.device] | None = None, **resolved: Any) -> None:
        super().connect(**resolved)
        if self._root_device is None and parallel_devices:
            if len(parallel_devices) > 1:
                raise ValueError(
                    f"strategy='single_device' runs one process on one device, but {len(parallel_devices)} devices "
                    "were requested. Use devices=1, or strategy='ddp' to run one process per device."
                )
            self._root_device = parallel_devices[0]

    @property
    def root_device(self) -> torch.device:
        if self._root_device is None:
            return torch.device("cpu")
        return self._root_device

    def all_gather(self, tensor: Tensor, group: Any | None = None, sync_grads: bool = False) -> Tensor:
        return tensor

    def all_reduce(self, tensor: Tensor, group: Any | None = None, reduce_op: Any | None = "mean") -> Tensor:
        resolve_reduce_op(reduce_op)  # an unknown op is a bug on one process as on many
        return tensor

    def barrier(self, name: str | None = None) -> None:
        pass

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if src != 0:
            raise ValueError(f"broadcast(src={src}): a single-process run has only rank 0.")
        return obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.root_device})"
