"""fabric-cuda's entry module: registers its names, importing nothing but ``hookimpl``."""

from __future__ import annotations

from fabric_core.plugins import hookimpl


@hookimpl
def fabric_register_accelerators(registry):
    # is_gpu and priority on the class make accelerator="gpu" and "auto" pick it; no extra names needed.
    registry.register(
        "cuda", "fabric_cuda.accelerator:CUDAAccelerator", description="NVIDIA GPUs (also 'gpu' and 'auto')"
    )


@hookimpl
def fabric_register_strategies(registry):
    registry.register(
        "dp", "fabric_cuda.dp:DataParallelStrategy", description="DataParallel: one process, several GPUs"
    )
