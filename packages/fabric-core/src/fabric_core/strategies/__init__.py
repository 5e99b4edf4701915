"""Strategies: how a model, its optimizers and its data are spread over devices and processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.strategies.ddp import DDPStrategy
    from fabric_core.strategies.parallel import ParallelStrategy
    from fabric_core.strategies.single_device import SingleDeviceStrategy
    from fabric_core.strategies.strategy import CheckpointKeyError, Strategy

__all__ = ["CheckpointKeyError", "DDPStrategy", "ParallelStrategy", "SingleDeviceStrategy", "Strategy"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CheckpointKeyError": "fabric_core.strategies.strategy",
        "DDPStrategy": "fabric_core.strategies.ddp",
        "ParallelStrategy": "fabric_core.strategies.parallel",
        "SingleDeviceStrategy": "fabric_core.strategies.single_device",
        "Strategy": "fabric_core.strategies.strategy",
    },
)
