"""fabric-cuda: NVIDIA GPUs for fabric-core.

Installing it (``pip install "fabric-core[cuda]"``) is all it takes: fabric-core discovers the plugin,
and ``Fabric(accelerator="cuda" | "gpu" | "auto", devices=..., strategy="dp" | "ddp" | ...)`` work::

    from fabric_core import Fabric
    from fabric_cuda import find_usable_cuda_devices

    fabric = Fabric(accelerator="cuda", devices=find_usable_cuda_devices(2), precision="bf16-mixed")

Importing this package is cheap: its classes are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports
from fabric_cuda.__about__ import __version__

if TYPE_CHECKING:
    from fabric_cuda.accelerator import CUDAAccelerator
    from fabric_cuda.devices import find_usable_cuda_devices
    from fabric_cuda.dp import DataParallelStrategy

__all__ = ["CUDAAccelerator", "DataParallelStrategy", "__version__", "find_usable_cuda_devices"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CUDAAccelerator": "fabric_cuda.accelerator",
        "DataParallelStrategy": "fabric_cuda.dp",
        "find_usable_cuda_devices": "fabric_cuda.devices",
    },
)
