"""fabric-deepspeed's entry module: registers its names, importing nothing but ``hookimpl`` (never deepspeed)."""

from __future__ import annotations

from fabric_core.plugins import hookimpl

_DEEPSPEED = "fabric_deepspeed.strategy:DeepSpeedStrategy"


@hookimpl
def fabric_register_strategies(registry):
    registry.register("deepspeed", _DEEPSPEED, description="DeepSpeed ZeRO stage 2, CPU over gloo or GPU over NCCL")
    registry.register("deepspeed_stage_1", _DEEPSPEED, description="DeepSpeed ZeRO stage 1 (optimizer state)", stage=1)
    registry.register(
        "deepspeed_stage_2", _DEEPSPEED, description="DeepSpeed ZeRO stage 2 (optimizer state, gradients)", stage=2
    )
    registry.register(
        "deepspeed_stage_2_offload",
        _DEEPSPEED,
        description="DeepSpeed ZeRO stage 2, optimizer state on the CPU",
        stage=2,
        offload_optimizer=True,
    )
    registry.register(
        "deepspeed_stage_3", _DEEPSPEED, description="DeepSpeed ZeRO stage 3 (optimizer, gradients, params)", stage=3
    )
    registry.register(
        "deepspeed_stage_3_offload",
        _DEEPSPEED,
        description="DeepSpeed ZeRO stage 3, optimizer state and parameters on the CPU",
        stage=3,
        offload_optimizer=True,
        offload_parameters=True,
    )
    registry.register(
        "deepspeed_stage_3_offload_nvme",
        _DEEPSPEED,
        description="DeepSpeed ZeRO stage 3, optimizer state and parameters on NVMe (nvme_path)",
        stage=3,
        offload_optimizer=True,
        offload_parameters=True,
        remote_device="nvme",
        offload_params_device="nvme",
        offload_optimizer_device="nvme",
    )


@hookimpl
def fabric_register_checkpoint_consolidators(registry):
    registry.register(
        "deepspeed",
        "fabric_deepspeed.consolidator:DeepSpeedConsolidator",
        description="DeepSpeed ZeRO checkpoint directories (fp32 weights rebuilt by zero_to_fp32)",
    )
