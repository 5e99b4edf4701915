"""The CUDA accelerator: NVIDIA GPUs for ``Fabric(accelerator="cuda" | "gpu" | "auto")``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.utilities.rank_zero import rank_zero_warn
from fabric_cuda.devices import num_cuda_devices, parse_cuda_devices

if TYPE_CHECKING:
    from fabric_core.precision.precision import Precision

#: Makes ``torch.cuda.is_available()`` ask NVML instead of initialising the CUDA driver.
NVML_CHECK_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"
#: The first compute capability with bfloat16 tensor cores (NVIDIA Ampere).
BF16_CAPABILITY = (8, 0)

_tf32_hint_given = False


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs through CUDA; each process computes on one GPU, and DDP talks over NCCL.

    ``accelerator="gpu"`` and ``accelerator="auto"`` pick it wherever a GPU is visible. ``devices`` takes a
    count (``2``), ``-1`` for all, indices (``[0, 3]`` or ``"0,3"``) or ``"auto"``; see
    :func:`fabric_cuda.devices.parse_cuda_devices`.

    Example::

        fabric = Fabric(accelerator="cuda", devices=[0, 1], precision="bf16-mixed")

    Resolution runs in the process that may later fork the workers (``strategy="ddp_fork"``), so
    nothing here initialises CUDA before :meth:`setup_device`, which runs in the worker.
    """

    device_type = "cuda"
    priority = 100  # above MPS (10) and the CPU (0)
    is_gpu = True
    default_process_group_backend = "nccl"

    def __init__(self) -> None:
        # torch.cuda.is_available() initialises the CUDA driver unless this variable is "1", after which
        # forked workers cannot use their GPUs; Fabric's parent process calls it when it creates the
        # 16-mixed gradient scaler. A value the user set (e.g. "0") is kept. Lightning sets the same
        # variable when it is imported; here it happens only once the CUDA accelerator is chosen.
        os.environ.setdefault(NVML_CHECK_ENV, "1")

    # -- in the worker -----------------------------------------------------------------------------

    def setup_device(self, device: torch.device) -> None:
        """Make ``device`` this process's current GPU, so that every rank works on its own."""
        device = torch.device(device)
        if device.type != "cuda" or device.index is None:
            raise ValueError(
                f"CUDAAccelerator.setup_device({device}): expected a CUDA device with an index, such as "
                "torch.device('cuda', 0)."
            )
        torch.cuda.set_device(device)
        _hint_tf32(device)

    def teardown(self) -> None:
        """Return cached GPU memory (and cuBLAS workspaces) to the driver; nothing if CUDA never started."""
        if not torch.cuda.is_initialized():
            return
        clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear_workspaces is not None:
            clear_workspaces()
        torch.cuda.empty_cache()

    def get_device_stats(self, device: torch.device) -> dict[str, Any]:
        """``torch.cuda.memory_stats(device)`` plus the current and peak allocated and reserved bytes.

        Example::

            stats = fabric.accelerator.get_device_stats(fabric.device)
            print(stats["max_allocated_bytes"] / 2**30, "GiB at most")
        """
        stats: dict[str, Any] = dict(torch.cuda.memory_stats(device))
        stats["allocated_bytes"] = torch.cuda.memory_allocated(device)
        stats["reserved_bytes"] = torch.cuda.memory_reserved(device)
        stats["max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        stats["max_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        return stats

    # -- during resolution (no CUDA initialisation) ------------------------------------------------

    @staticmethod
    def is_available() -> bool:
        return num_cuda_devices() > 0

    @staticmethod
    def parse_devices(devices: Any) -> list[int]:
        return parse_cuda_devices(devices)

    @staticmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        indices = devices if isinstance(devices, list) else parse_cuda_devices(devices)
        return [torch.device("cuda", index) for index in indices]

    @staticmethod
    def auto_device_count() -> int:
        return num_cuda_devices()

    def validate_precision(self, precision: Precision, devices: list[torch.device]) -> None:
        """Reject ``"bf16-mixed"`` on GPUs without bfloat16 tensor cores (before Ampere, e.g. V100, T4).

        bfloat16 autocast there runs emulated, slower than float32, which defeats its purpose. The
        compute capability comes from NVML (or torch once CUDA runs); where neither can tell, nothing
        is checked here and torch decides when the first forward runs.
        """
        if getattr(precision, "precision", None) != "bf16-mixed":
            return
        for device in devices:
            capability = device_capability(device.index or 0)
            if capability is not None and capability < BF16_CAPABILITY:
                name = device_name(device.index or 0)
                raise ValueError(
                    f"precision='bf16-mixed' needs GPUs with bfloat16 support (compute capability 8.0, NVIDIA "
                    f"Ampere, or newer), but {device}{f' ({name})' if name else ''} has compute capability "
                    f"{capability[0]}.{capability[1]}. Use precision='16-mixed' (float16 with loss scaling) or "
                    "'32-true' on this GPU."
                )


def device_capability(index: int) -> tuple[int, int] | None:
    """The compute capability of visible GPU ``index`` without initialising CUDA; ``None`` if unknown."""
    if torch.cuda.is_initialized():
        return tuple(torch.cuda.get_device_capability(index))  # type: ignore[return-value]
    from fabric_cuda import nvml

    gpus = nvml.visible_gpus()
    return gpus[index].capability if gpus is not None and index < len(gpus) else None


def device_name(index: int) -> str | None:
    """The name of visible GPU ``index`` without initialising CUDA; ``None`` if unknown."""
    if torch.cuda.is_initialized():
        return torch.cuda.get_device_name(index)
    from fabric_cuda import nvml

    gpus = nvml.visible_gpus()
    return gpus[index].name if gpus is not None and index < len(gpus) else None


def _hint_tf32(device: torch.device) -> None:
    """Once per process: on Ampere or newer, say that TF32 matmuls are off by default and how to turn them on."""
    global _tf32_hint_given
    if _tf32_hint_given or torch.get_float32_matmul_precision() != "highest":
        return  # the user has chosen already (set_float32_matmul_precision or allow_tf32)
    major, _ = torch.cuda.get_device_capability(device)
    if major < BF16_CAPABILITY[0]:
        return  # no tensor cores for TF32 before Ampere
    _tf32_hint_given = True
    rank_zero_warn(
        f"{device} ({torch.cuda.get_device_name(device)}) has Tensor Cores that run float32 matrix "
        "multiplications much faster in TF32, which torch leaves off by default. To trade a little precision "
        "for speed, call torch.set_float32_matmul_precision('high') (or 'medium') at the start of your script; "
        "see https://pytorch.org/docs/stable/generated/torch.set_float32_matmul_precision.html",
        stacklevel=4,
    )
