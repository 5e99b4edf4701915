"""What the NVIDIA driver's management library (NVML) knows about the GPUs, read without starting CUDA.

A process that initialises CUDA and then forks (``strategy="ddp_fork"``, ``"ddp_notebook"``) leaves
children that cannot use their GPUs. NVML answers questions about the GPUs -- their names and compute
capability -- without initialising CUDA, so Fabric's resolution, which runs in that parent process,
asks NVML. Every function returns ``None`` where NVML is missing or fails; callers then skip what
needed the answer or ask ``torch.cuda`` once CUDA runs anyway.

Example::

    from fabric_cuda.nvml import visible_gpus

    for index, gpu in enumerate(visible_gpus() or []):
        print(index, gpu.name, gpu.capability)  # 0 NVIDIA A100-SXM4-80GB (8, 0)
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

#: Where the library lives: Linux, then Windows.
_LIBRARY_NAMES = ("libnvidia-ml.so.1", "nvml.dll")
_TEXT_BUFFER = 96  # NVML's longest name and UUID strings fit in 96 bytes


@dataclass(frozen=True)
class GpuInfo:
    """One physical GPU as NVML numbers it (the numbering ``CUDA_VISIBLE_DEVICES`` refers to)."""

    index: int
    name: str
    uuid: str
    capability: tuple[int, int]


def _load_library() -> ctypes.CDLL | None:
    for name in _LIBRARY_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _read_gpu(nvml: ctypes.CDLL, index: int) -> GpuInfo | None:
    handle = ctypes.c_void_p()
    if nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != 0:
        return None
    name = ctypes.create_string_buffer(_TEXT_BUFFER)
    uuid = ctypes.create_string_buffer(_TEXT_BUFFER)
    major, minor = ctypes.c_int(), ctypes.c_int()
    if (
        nvml.nvmlDeviceGetName(handle, name, ctypes.c_uint(_TEXT_BUFFER)) != 0
        or nvml.nvmlDeviceGetUUID(handle, uuid, ctypes.c_uint(_TEXT_BUFFER)) != 0
        or nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)) != 0
    ):
        return None
    return GpuInfo(
        index, name.value.decode(errors="replace"), uuid.value.decode(errors="replace"), (major.value, minor.value)
    )


@functools.lru_cache(maxsize=1)  # the machine's GPUs do not change while a process runs
def physical_gpus() -> tuple[GpuInfo, ...] | None:
    """Every GPU of the machine, ignoring ``CUDA_VISIBLE_DEVICES``; ``None`` where NVML cannot tell."""
    nvml = _load_library()
    if nvml is None:
        return None
    try:
        if nvml.nvmlInit_v2() != 0:
            return None
    except AttributeError:  # a library without the v2 entry points is too old to trust
        return None
    try:
        count = ctypes.c_uint()
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        gpus = [_read_gpu(nvml, index) for index in range(count.value)]
        return None if any(gpu is None for gpu in gpus) else tuple(gpus)  # type: ignore[arg-type]
    except AttributeError:
        return None
    finally:
        nvml.nvmlShutdown()


def _select(entry: str, gpus: tuple[GpuInfo, ...]) -> GpuInfo | None:
    """The GPU one ``CUDA_VISIBLE_DEVICES`` entry names: an index or a (prefix of a) ``GPU-`` UUID."""
    if entry.isdigit():
        index = int(entry)
        return gpus[index] if index < len(gpus) else None
    if entry.startswith("GPU-"):
        matches = [gpu for gpu in gpus if gpu.uuid.startswith(entry)]
        return matches[0] if len(matches) == 1 else None
    return None


def visible_gpus() -> list[GpuInfo] | None:
    """The GPUs this process may use, in CUDA's numbering (``CUDA_VISIBLE_DEVICES`` applied).

    ``None`` where NVML cannot tell, or where the mask names MIG instances, which NVML lists apart.
    Like CUDA, the list stops at the first entry that names no GPU, and a repeated entry hides them all.

    NVML numbers GPUs by PCI bus; CUDA, unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, puts the fastest first.
    The two orders can differ only where the GPUs differ, so on a machine of mixed GPUs without that
    setting the answer is ``None`` rather than a guess.
    """
    gpus = physical_gpus()
    if gpus is None:
        return None
    mixed = len({(gpu.name, gpu.capability) for gpu in gpus}) > 1
    if mixed and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        return None
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return list(gpus)
    selected: list[GpuInfo] = []
    for entry in (part.strip() for part in mask.split(",")):
        if entry.startswith("MIG-"):
            return None
        gpu = _select(entry, gpus)
        if gpu is None:
            break
        if gpu in selected:
            return []
        selected.append(gpu)
    return selected
