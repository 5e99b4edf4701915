"""DeepSpeed itself, imported and pointed at fabric's device: its accelerator, its logging, its communication.

DeepSpeed picks an "accelerator" (CUDA, CPU, ...) when it is first imported and keeps it for the
process; it must be the device Fabric chose, so it is set explicitly here. On the CPU, DeepSpeed's
communication layer would compile its shared-memory all-reduce operator (18 s, once per machine) at
start-up, although only inference all-reduce uses it: the CPU accelerator given to DeepSpeed reports
no such operator, so training starts at once over gloo.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

#: fabric device type -> DeepSpeed's name for its accelerator (``DS_ACCELERATOR``)
ACCELERATORS = {"cpu": "cpu", "cuda": "cuda"}

INSTALL_HINT = 'pip install "fabric-core[deepspeed]"'


def check_installed() -> None:
    """Fail with the install command when deepspeed is missing (without importing it)."""
    if importlib.util.find_spec("deepspeed") is None:
        raise ModuleNotFoundError(
            f"DeepSpeedStrategy needs the deepspeed package, which is not installed. Install it with: {INSTALL_HINT}"
        )


def check_device_type(device_type: str) -> None:
    """DeepSpeed runs here on the devices it has an accelerator for; ``DS_ACCELERATOR`` must agree."""
    if device_type not in ACCELERATORS:
        raise ValueError(
            f"DeepSpeedStrategy runs on the 'cpu' and 'cuda' accelerators, not on {device_type!r}. Use "
            "Fabric(accelerator='cpu') or Fabric(accelerator='cuda'), or another strategy such as 'ddp'."
        )
    requested = os.environ.get("DS_ACCELERATOR")
    if requested is not None and requested != ACCELERATORS[device_type]:
        raise ValueError(
            f"The environment sets DS_ACCELERATOR={requested!r}, but Fabric runs DeepSpeed on {device_type!r}. "
            f"Unset DS_ACCELERATOR (fabric-deepspeed sets DeepSpeed's accelerator itself) or choose the matching "
            "Fabric(accelerator=...)."
        )


def fp16_supported(device_type: str) -> bool:
    """Whether DeepSpeed's float16 engine runs on this device (on the CPU it needs oneDNN float16 support)."""
    if device_type != "cpu":
        return True
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextmanager
def _environment(name: str, value: str):
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _cpu_accelerator() -> Any:
    from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

    class TrainingCPUAccelerator(CPU_Accelerator):
        """DeepSpeed's CPU accelerator without the shared-memory all-reduce operator (inference only)."""

        def create_op_builder(self, op_name: str) -> Any:
            if op_name == "ShareMemCommBuilder":
                return None
            return super().create_op_builder(op_name)

    return TrainingCPUAccelerator()


def import_deepspeed(device_type: str, logging_level: int) -> Any:
    """Import deepspeed with its accelerator set to ``device_type``'s and its logger at ``logging_level``."""
    # The variable only quiets the import's own detection (and its warning); set_accelerator decides.
    with _environment("DS_ACCELERATOR", ACCELERATORS[device_type]):
        import deepspeed
        from deepspeed.accelerator import set_accelerator
    deepspeed.utils.logging.logger.setLevel(logging_level)
    if device_type == "cpu":
        set_accelerator(_cpu_accelerator())
    else:
        from deepspeed.accelerator.cuda_accelerator import CUDA_Accelerator

        set_accelerator(CUDA_Accelerator())
    return deepspeed


def init_communication(deepspeed: Any, backend: str, timeout: timedelta | None) -> None:
    """Let DeepSpeed's communication layer use the process group fabric-core created."""
    kwargs: dict[str, Any] = {"dist_backend": backend, "dist_init_required": False, "verbose": False}
    if timeout is not None:
        kwargs["timeout"] = timeout
    deepspeed.comm.init_distributed(**kwargs)


def describe_process(global_rank: int, local_rank: int, world_size: int) -> None:
    """Set the variables DeepSpeed reads to place this process (the values fabric-core resolved)."""
    for name, value in (("RANK", global_rank), ("LOCAL_RANK", local_rank), ("WORLD_SIZE", world_size)):
        os.environ[name] = str(value)


def configure_activation_checkpointing(deepspeed: Any, config: dict[str, Any]) -> None:
    """Apply the config's ``activation_checkpointing`` section to ``deepspeed.checkpointing`` (as Lightning does)."""
    section = config.get("activation_checkpointing")
    if not section:
        return
    deepspeed.checkpointing.configure(
        mpu_=None,
        partition_activations=section.get("partition_activations"),
        contiguous_checkpointing=section.get("contiguous_memory_optimization"),
        checkpoint_in_cpu=section.get("cpu_checkpointing"),
        profile=section.get("profile"),
    )
