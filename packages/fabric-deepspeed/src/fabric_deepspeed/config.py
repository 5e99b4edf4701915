"""The DeepSpeed configuration: built from ``DeepSpeedStrategy``'s arguments, or read from a dict or JSON file.

Everything here is checked without importing deepspeed, so a bad value fails at ``Fabric(...)``,
before any process starts or any file is written.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from pathlib import Path
from typing import Any

#: Top-level keys DeepSpeed 0.19 reads from its configuration (``DeepSpeedConfig`` and the engine).
TOP_LEVEL_KEYS = frozenset(
    {
        "activation_checkpointing",
        "aio",
        "amp",
        "autotuning",
        "bf16",
        "bfloat16",
        "checkpoint",
        "comet",
        "comms_logger",
        "communication_data_type",
        "compile",
        "compression_training",
        "csv_monitor",
        "curriculum_learning",
        "data_efficiency",
        "data_types",
        "dataloader_drop_last",
        "datastates_ckpt",
        "disable_allgather",
        "disable_python_gc",
        "dump_state",
        "eigenvalue",
        "elasticity",
        "expert_parallel",
        "flops_profiler",
        "fp16",
        "gradient_accumulation_steps",
        "gradient_allreduce_op",
        "gradient_clipping",
        "gradient_predivide_factor",
        "graph_harvesting",
        "hybrid_engine",
        "log_level",
        "managed_gradient_accumulation",
        "memory_breakdown",
        "nebula",
        "optimizer",
        "pipeline",
        "prescale_gradients",
        "progressive_layer_drop",
        "quantize_training",
        "scheduler",
        "seq_parallel_communication_data_type",
        "sparse_attention",
        "sparse_gradients",
        "steps_per_print",
        "tensor_parallel",
        "tensorboard",
        "timers",
        "torch_autocast",
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "use_data_before_expert_parallelism",
        "vocabulary_size",
        "wall_clock_breakdown",
        "wandb",
        "weight_quantization",
        "zero_allow_untested_optimizer",
        "zero_force_ds_cpu_optimizer",
        "zero_optimization",
    }
)

#: Keys of the ``zero_optimization`` section (fields and aliases of DeepSpeed 0.19's ``DeepSpeedZeroConfig``,
#: which forbids any other, plus the MiCS and ZeRO++ keys the engine reads from the same section).
ZERO_KEYS = frozenset(
    {
        "allgather_bucket_size",
        "allgather_partitions",
        "allgather_sequential",
        "compute_grad_norm",
        "contiguous_gradients",
        "cpu_offload",
        "cpu_offload_param",
        "cpu_offload_use_pin_memory",
        "elastic_checkpoint",
        "enable_sanity_checks",
        "gather_16bit_weights_on_model_save",
        "ignore_unused_parameters",
        "leaf_module",
        "legacy_stage1",
        "load_from_fp32_weights",
        "log_trace_cache_warnings",
        "max_live_parameters",
        "max_reuse_distance",
        "memory_efficient_linear",
        "mics_hierarchical_params_gather",
        "mics_shard_size",
        "model_persistence_threshold",
        "module_granularity_threshold",
        "offload_optimizer",
        "offload_param",
        "overlap_comm",
        "override_module_apply",
        "param_persistence_threshold",
        "parameter_alignment",
        "pipeline_loading_checkpoint",
        "prefetch_bucket_size",
        "reduce_bucket_size",
        "reduce_scatter",
        "round_robin_gradients",
        "save_muon_momentum_buffer_in_memory",
        "stage",
        "stage3_allgather_sequential",
        "stage3_gather_16bit_weights_on_model_save",
        "stage3_gather_fp16_weights_on_model_save",
        "stage3_max_live_parameters",
        "stage3_max_reuse_distance",
        "stage3_model_persistence_threshold",
        "stage3_module_granularity_threshold",
        "stage3_param_persistence_threshold",
        "stage3_prefetch_bucket_size",
        "stage3_use_all_reduce_for_fetch_params",
        "sub_group_size",
        "use_all_reduce_for_fetch_params",
        "use_multi_rank_bucket_allreduce",
        "zenflow",
        "zero_hpz_partition_size",
        "zero_quantized_gradients",
        "zero_quantized_nontrainable_weights",
        "zero_quantized_weights",
    }
)

STAGES = (0, 1, 2, 3)
OFFLOAD_DEVICES = ("cpu", "nvme")


def load_config(config: Any) -> dict[str, Any] | None:
    """A copy of ``config`` given as a dict, or the dict read from a JSON file path; ``None`` for ``None``."""
    if config is None:
        return None
    if isinstance(config, dict):
        return copy.deepcopy(config)
    if not isinstance(config, (str, os.PathLike)):
        raise TypeError(
            f"DeepSpeedStrategy(config={config!r}) must be a dict or the path of a JSON file, "
            f"not {type(config).__name__}."
        )
    path = Path(config)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"DeepSpeedStrategy(config='{path}'): the DeepSpeed config file {what}. Pass the path of a JSON file "
            "(e.g. ds_config.json) or the config as a dict."
        )
    text = path.read_text(encoding="utf-8")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"DeepSpeedStrategy(config='{path}'): the file is not valid JSON: {err.msg} at line {err.lineno}, "
            f"column {err.colno}. Fix that line (JSON has no comments and no trailing commas)."
        ) from None
    if not isinstance(loaded, dict):
        raise ValueError(
            f"DeepSpeedStrategy(config='{path}'): the file holds a JSON {type(loaded).__name__}, not an object of "
            'settings such as {"zero_optimization": {"stage": 2}}.'
        )
    return loaded


def _suggest(key: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_config(config: dict[str, Any], source: str = "config") -> None:
    """Refuse keys DeepSpeed does not know (it would ignore most of them silently) and impossible values."""
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            raise ValueError(
                f"DeepSpeedStrategy({source}): unknown DeepSpeed config key {key!r}"
                f"{_suggest(str(key), TOP_LEVEL_KEYS)}. "
                "DeepSpeed would ignore it; see https://www.deepspeed.ai/docs/config-json/ for the keys it reads."
            )
    zero = config.get("zero_optimization")
    if zero is None:
        return
    if not isinstance(zero, dict):
        raise ValueError(
            f"DeepSpeedStrategy({source}): 'zero_optimization' must be an object such as {{\"stage\": 2}}, "
            f"got {zero!r}."
        )
    for key in zero:
        if key not in ZERO_KEYS:
            raise ValueError(
                f"DeepSpeedStrategy({source}): unknown key {key!r} in 'zero_optimization'"
                f"{_suggest(str(key), ZERO_KEYS)}. See https://www.deepspeed.ai/docs/config-json/#zero-optimizations-"
                "for-fp16-training for the keys DeepSpeed reads."
            )
    stage = zero.get("stage", 0)
    check_stage(stage, source=f"{source}, zero_optimization.stage")
    check_offload(stage, zero.get("offload_optimizer") is not None, zero.get("offload_param") is not None, source)


def check_stage(stage: Any, source: str = "stage") -> None:
    if isinstance(stage, bool) or stage not in STAGES:
        raise ValueError(
            f"DeepSpeedStrategy({source}={stage!r}) is not a ZeRO stage: expected 0 (off), 1 (optimizer state "
            "partitioned), 2 (plus gradients) or 3 (plus parameters)."
        )


def check_offload(stage: int, offload_optimizer: bool, offload_parameters: bool, source: str = "arguments") -> None:
    """Offloading needs a ZeRO stage that partitions what it offloads."""
    if offload_parameters and stage != 3:
        raise ValueError(
            f"DeepSpeedStrategy({source}): offloading parameters needs ZeRO stage 3, which partitions them; got "
            f"stage {stage}. Use strategy='deepspeed_stage_3_offload', or offload only the optimizer with stage 2 "
            "('deepspeed_stage_2_offload')."
        )
    if offload_optimizer and stage < 2:
        raise ValueError(
            f"DeepSpeedStrategy({source}): offloading the optimizer is supported from ZeRO stage 2 on; got stage "
            f"{stage}. Use strategy='deepspeed_stage_2_offload' (or stage=2, offload_optimizer=True)."
        )


def check_offload_device(name: str, device: Any) -> None:
    if device not in OFFLOAD_DEVICES:
        raise ValueError(f"DeepSpeedStrategy({name}={device!r}) must be one of {OFFLOAD_DEVICES}.")


def default_config(
    *,
    zero_optimization: bool,
    stage: int,
    offload_optimizer: bool,
    offload_parameters: bool,
    offload_params_device: str,
    offload_optimizer_device: str,
    nvme_path: str,
    params_buffer_count: int,
    params_buffer_size: int,
    max_in_cpu: int,
    optimizer_buffer_count: int,
    pin_memory: bool,
    block_size: int,
    queue_depth: int,
    single_submit: bool,
    overlap_events: bool,
    thread_count: int,
    zero_allow_untested_optimizer: bool,
    logging_batch_size_per_gpu: int | None,
    partition_activations: bool,
    cpu_checkpointing: bool,
    contiguous_memory_optimization: bool,
    synchronize_checkpoint_boundary: bool,
    **zero_options: Any,
) -> dict[str, Any]:
    """The config Lightning's ``DeepSpeedStrategy`` builds from the same arguments (same keys, same values)."""
    config: dict[str, Any] = {
        "activation_checkpointing": {
            "partition_activations": partition_activations,
            "cpu_checkpointing": cpu_checkpointing,
            "contiguous_memory_optimization": contiguous_memory_optimization,
            "synchronize_checkpoint_boundary": synchronize_checkpoint_boundary,
        },
        "aio": {
            "block_size": block_size,
            "queue_depth": queue_depth,
            "single_submit": single_submit,
            "overlap_events": overlap_events,
            "thread_count": thread_count,
        },
    }
    if zero_optimization:
        zero: dict[str, Any] = {"stage": stage, **zero_options}
        if offload_optimizer:
            zero["offload_optimizer"] = {
                "device": offload_optimizer_device,
                "nvme_path": nvme_path,
                "buffer_count": optimizer_buffer_count,
                "pin_memory": pin_memory,
            }
        if offload_parameters:
            zero["offload_param"] = {
                "device": offload_params_device,
                "nvme_path": nvme_path,
                "buffer_count": params_buffer_count,
                "buffer_size": params_buffer_size,
                "max_in_cpu": max_in_cpu,
                "pin_memory": pin_memory,
            }
        config["zero_allow_untested_optimizer"] = zero_allow_untested_optimizer
        config["zero_optimization"] = zero
    if logging_batch_size_per_gpu:
        config["train_micro_batch_size_per_gpu"] = logging_batch_size_per_gpu
    return config


def zero_stage(config: dict[str, Any]) -> int:
    zero = config.get("zero_optimization")
    return int(zero.get("stage", 0)) if isinstance(zero, dict) else 0


def offloads_optimizer(config: dict[str, Any]) -> bool:
    zero = config.get("zero_optimization")
    return isinstance(zero, dict) and bool(zero.get("offload_optimizer") or zero.get("cpu_offload"))


def add_precision(
    config: dict[str, Any],
    precision: str,
    *,
    loss_scale: float,
    initial_scale_power: int,
    loss_scale_window: int,
    hysteresis: int,
    min_loss_scale: float,
) -> None:
    """Add the ``fp16``/``bf16`` section ``precision`` needs, unless the config already has one (it wins)."""
    if precision in ("16-mixed", "16-true") and "fp16" not in config:
        config["fp16"] = {
            "enabled": True,
            "loss_scale": loss_scale,
            "initial_scale_power": initial_scale_power,
            "loss_scale_window": loss_scale_window,
            "hysteresis": hysteresis,
            "min_loss_scale": min_loss_scale,
        }
    elif precision in ("bf16-mixed", "bf16-true") and "bf16" not in config and "bfloat16" not in config:
        config["bf16"] = {"enabled": True}
