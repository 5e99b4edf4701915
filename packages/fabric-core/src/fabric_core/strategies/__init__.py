"""Strategies: how a model, its optimizers and its data are spread over devices and processes."""

from fabric_core.strategies.ddp import DDPStrategy
from fabric_core.strategies.parallel import ParallelStrategy
from fabric_core.strategies.single_device import SingleDeviceStrategy
from fabric_core.strategies.strategy import CheckpointKeyError, Strategy

__all__ = ["CheckpointKeyError", "DDPStrategy", "ParallelStrategy", "SingleDeviceStrategy", "Strategy"]
