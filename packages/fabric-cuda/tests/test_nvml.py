"""Which physical GPUs ``CUDA_VISIBLE_DEVICES`` selects, as read from NVML (faked here)."""

from __future__ import annotations

import pytest

from fabric_cuda import nvml
from fabric_cuda.nvml import GpuInfo

GPUS = tuple(GpuInfo(i, "NVIDIA A100", f"GPU-{i}{i}{i}{i}-uuid", (8, 0)) for i in range(4))


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setattr(nvml, "physical_gpus", lambda: GPUS)


def _indices(gpus):
    return None if gpus is None else [gpu.index for gpu in gpus]


def test_without_a_mask_every_gpu_is_visible(four_gpus):
    assert _indices(nvml.visible_gpus()) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ("2,0", [2, 0]),
        (" 3 , 1", [3, 1]),
        ("1,7,2", [1]),  # CUDA stops at the first entry that names no GPU
        ("1,x,2", [1]),
        ("1,1", []),  # a repeated entry hides every GPU
        ("", []),
        ("GPU-2222", [2]),  # a UUID prefix
        ("GPU-3333-uuid,GPU-0000", [3, 0]),
        ("GPU-", []),  # ambiguous: matches every GPU
    ],
)
def test_the_mask_selects_and_orders_the_visible_gpus(four_gpus, monkeypatch, mask, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mask)
    assert _indices(nvml.visible_gpus()) == expected


def test_mig_instances_are_not_resolved(four_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-abcd")
    assert nvml.visible_gpus() is None


def test_mixed_gpus_are_matched_only_in_pci_bus_order(monkeypatch):
    mixed = (GpuInfo(0, "NVIDIA A100", "GPU-a", (8, 0)), GpuInfo(1, "Tesla T4", "GPU-b", (7, 5)))
    monkeypatch.setattr(nvml, "physical_gpus", lambda: mixed)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    assert nvml.visible_gpus() is None  # CUDA may number the faster A100 first, or not
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert _indices(nvml.visible_gpus()) == [0, 1]


def test_without_nvml_nothing_is_known(monkeypatch):
    monkeypatch.setattr(nvml, "physical_gpus", lambda: None)
    assert nvml.visible_gpus() is None


def test_reading_the_real_library_never_raises():
    # No NVIDIA driver: None. With one: a GpuInfo per GPU.
    gpus = nvml.physical_gpus()
    assert gpus is None or all(isinstance(gpu, GpuInfo) for gpu in gpus)
