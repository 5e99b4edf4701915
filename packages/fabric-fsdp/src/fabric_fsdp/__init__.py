"""fabric-fsdp: fully sharded training for fabric-core, built on FSDP2 (``fully_shard`` and ``DeviceMesh``).

Installing it (``pip install "fabric-core[fsdp]"``) registers the strategies ``fsdp``,
``fsdp_cpu_offload`` and ``model_parallel``, and the checkpoint format ``fsdp`` of ``fabric consolidate``::

    from fabric_core import Fabric
    from fabric_fsdp import FSDPStrategy

    fabric = Fabric(strategy=FSDPStrategy(auto_wrap_policy={Block}), devices=2, precision="bf16-mixed")

Importing this package is cheap: its classes (and torch.distributed.fsdp) are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports
from fabric_fsdp.__about__ import __version__

if TYPE_CHECKING:
    from fabric_fsdp.checkpoint import consolidate_checkpoint
    from fabric_fsdp.fsdp import FSDPStrategy
    from fabric_fsdp.model_parallel import ModelParallelStrategy
    from fabric_fsdp.precision import FSDPPrecision

__all__ = ["FSDPPrecision", "FSDPStrategy", "ModelParallelStrategy", "__version__", "consolidate_checkpoint"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "FSDPPrecision": "fabric_fsdp.precision",
        "FSDPStrategy": "fabric_fsdp.fsdp",
        "ModelParallelStrategy": "fabric_fsdp.model_parallel",
        "consolidate_checkpoint": "fabric_fsdp.checkpoint",
    },
)
