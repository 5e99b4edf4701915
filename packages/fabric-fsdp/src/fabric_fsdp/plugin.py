"""fabric-fsdp's entry module: registers its names, importing nothing but ``hookimpl``."""

from __future__ import annotations

from fabric_core.plugins import hookimpl

_FSDP = "fabric_fsdp.fsdp:FSDPStrategy"


@hookimpl
def fabric_register_strategies(registry):
    registry.register("fsdp", _FSDP, description="Fully sharded data parallel (FSDP2), CPU over gloo or GPU over NCCL")
    registry.register(
        "fsdp_cpu_offload",
        _FSDP,
        description="FSDP2 with parameters, gradients and optimizer state on the CPU",
        cpu_offload=True,
    )
    registry.register(
        "model_parallel",
        "fabric_fsdp.model_parallel:ModelParallelStrategy",
        description="2-D data x tensor parallel over a DeviceMesh; needs ModelParallelStrategy(parallelize_fn=...)",
    )


@hookimpl
def fabric_register_checkpoint_consolidators(registry):
    # `fabric consolidate` (fabric-core's) uses it for directories holding a .metadata file.
    registry.register(
        "fsdp",
        "fabric_fsdp.consolidator:DCPConsolidator",
        description="torch.distributed.checkpoint directories (a .metadata file): fsdp, model_parallel",
    )
