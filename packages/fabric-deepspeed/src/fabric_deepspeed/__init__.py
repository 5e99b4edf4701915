"""fabric-deepspeed: DeepSpeed ZeRO stages 1-3 and offloading for fabric-core, on CPUs and GPUs.

Installing it (``pip install "fabric-core[deepspeed]"``) registers the strategies ``deepspeed``,
``deepspeed_stage_1``, ``deepspeed_stage_2``, ``deepspeed_stage_2_offload``, ``deepspeed_stage_3``,
``deepspeed_stage_3_offload`` and ``deepspeed_stage_3_offload_nvme``, and DeepSpeed checkpoints for
``fabric consolidate``::

    from fabric_core import Fabric
    from fabric_deepspeed import DeepSpeedStrategy

    fabric = Fabric(strategy=DeepSpeedStrategy(stage=3), devices=2, precision="bf16-mixed")

Importing this package is cheap: its classes (and deepspeed) are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports
from fabric_deepspeed.__about__ import __version__

if TYPE_CHECKING:
    from fabric_deepspeed.consolidator import DeepSpeedConsolidator
    from fabric_deepspeed.precision import DeepSpeedPrecision
    from fabric_deepspeed.strategy import DeepSpeedStrategy

__all__ = ["DeepSpeedConsolidator", "DeepSpeedPrecision", "DeepSpeedStrategy", "__version__"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DeepSpeedConsolidator": "fabric_deepspeed.consolidator",
        "DeepSpeedPrecision": "fabric_deepspeed.precision",
        "DeepSpeedStrategy": "fabric_deepspeed.strategy",
    },
)
