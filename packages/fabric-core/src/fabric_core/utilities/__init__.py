"""Helpers for training scripts: throughput, spike detection, data, seeding, rank-zero output, warnings.

Everything ``lightning.fabric.utilities`` exports is here under the same name, plus a few helpers
that Lightning keeps in its submodules (``SpikeDetection``, ``has_len``, the seed functions, ...)::

    from fabric_core.utilities import AttributeDict, ThroughputMonitor, measure_flops, rank_zero_only

Importing the package is cheap: each name imports its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.utilities.apply_func import move_data_to_device
    from fabric_core.utilities.cloud_io import get_filesystem
    from fabric_core.utilities.data import (
        AttributeDict,
        has_iterable_dataset,
        has_len,
        sized_len,
        suggested_max_num_workers,
    )
    from fabric_core.utilities.distributed import is_shared_filesystem
    from fabric_core.utilities.enums import LightningEnum
    from fabric_core.utilities.rank_zero import (
        rank_zero_debug,
        rank_zero_deprecation,
        rank_zero_info,
        rank_zero_only,
        rank_zero_warn,
    )
    from fabric_core.utilities.seed import pl_worker_init_function, reset_seed, seed_everything, worker_init_function
    from fabric_core.utilities.spike import SpikeDetection, TrainingSpikeException
    from fabric_core.utilities.throughput import Throughput, ThroughputMonitor, get_available_flops, measure_flops
    from fabric_core.utilities.warnings import PossibleUserWarning, disable_possible_user_warnings
    from fabric_core.wrappers import is_wrapped

_EXPORTS = {
    # lightning.fabric.utilities.__all__
    "AttributeDict": "fabric_core.utilities.data",
    "LightningEnum": "fabric_core.utilities.enums",
    "Throughput": "fabric_core.utilities.throughput",
    "ThroughputMonitor": "fabric_core.utilities.throughput",
    "disable_possible_user_warnings": "fabric_core.utilities.warnings",
    "is_shared_filesystem": "fabric_core.utilities.distributed",
    "measure_flops": "fabric_core.utilities.throughput",
    "move_data_to_device": "fabric_core.utilities.apply_func",
    "rank_zero_deprecation": "fabric_core.utilities.rank_zero",
    "rank_zero_info": "fabric_core.utilities.rank_zero",
    "rank_zero_only": "fabric_core.utilities.rank_zero",
    "rank_zero_warn": "fabric_core.utilities.rank_zero",
    "suggested_max_num_workers": "fabric_core.utilities.data",
    # from Lightning's submodules, at the package level here
    "PossibleUserWarning": "fabric_core.utilities.warnings",
    "SpikeDetection": "fabric_core.utilities.spike",
    "TrainingSpikeException": "fabric_core.utilities.spike",
    "get_available_flops": "fabric_core.utilities.throughput",
    "get_filesystem": "fabric_core.utilities.cloud_io",
    "has_iterable_dataset": "fabric_core.utilities.data",
    "has_len": "fabric_core.utilities.data",
    "is_wrapped": "fabric_core.wrappers",
    "pl_worker_init_function": "fabric_core.utilities.seed",
    "rank_zero_debug": "fabric_core.utilities.rank_zero",
    "reset_seed": "fabric_core.utilities.seed",
    "seed_everything": "fabric_core.utilities.seed",
    "sized_len": "fabric_core.utilities.data",
    "worker_init_function": "fabric_core.utilities.seed",
}

__all__ = [
    "AttributeDict",
    "LightningEnum",
    "PossibleUserWarning",
    "SpikeDetection",
    "Throughput",
    "ThroughputMonitor",
    "TrainingSpikeException",
    "disable_possible_user_warnings",
    "get_available_flops",
    "get_filesystem",
    "has_iterable_dataset",
    "has_len",
    "is_shared_filesystem",
    "is_wrapped",
    "measure_flops",
    "move_data_to_device",
    "pl_worker_init_function",
    "rank_zero_debug",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "reset_seed",
    "seed_everything",
    "sized_len",
    "suggested_max_num_workers",
    "worker_init_function",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
