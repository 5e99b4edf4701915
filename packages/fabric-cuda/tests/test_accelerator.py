"""The CUDA accelerator's behaviour in the worker and in resolution (on the CPU, with fake GPUs)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from fabric_core.precision import HalfPrecision, MixedPrecision, Precision
from fabric_core.testing import AcceleratorConformance
from fabric_core.utilities.rank_zero import rank_zero_state
from fabric_cuda.accelerator import NVML_CHECK_ENV, CUDAAccelerator


class TestCUDAAccelerator(AcceleratorConformance):
    accelerator_cls = CUDAAccelerator  # the checks that need a GPU skip without one


def test_class_attributes_rank_it_above_the_cpu_and_mps_for_auto_and_gpu():
    assert CUDAAccelerator.device_type == "cuda"
    assert CUDAAccelerator.is_gpu is True
    assert CUDAAccelerator.priority > 10  # MPS is 10, the CPU 0
    assert CUDAAccelerator.default_process_group_backend == "nccl"


# -- the NVML-based availability check -----------------------------------------------------------


def test_creating_it_makes_torch_check_availability_through_nvml():
    CUDAAccelerator()
    assert os.environ[NVML_CHECK_ENV] == "1"


def test_an_nvml_setting_made_by_the_user_is_kept(monkeypatch):
    monkeypatch.setenv(NVML_CHECK_ENV, "0")
    CUDAAccelerator()
    assert os.environ[NVML_CHECK_ENV] == "0"


def test_the_plugin_module_imports_neither_the_accelerator_nor_the_strategy():
    code = (
        "import sys, fabric_cuda.plugin\n"
        "loaded = [m for m in ('fabric_cuda.accelerator', 'fabric_cuda.dp', 'torch') if m in sys.modules]\n"
        "print(loaded)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# -- setup_device and the TF32 hint --------------------------------------------------------------


def test_setup_device_makes_the_device_current(fake_gpus):
    machine = fake_gpus(2, capability=(7, 5))
    CUDAAccelerator().setup_device(torch.device("cuda", 1))
    assert machine.set_devices == [torch.device("cuda", 1)]


@pytest.mark.parametrize("device", [torch.device("cpu"), torch.device("cuda")], ids=str)
def test_setup_device_rejects_a_device_that_is_not_one_gpu(device):
    with pytest.raises(ValueError, match=f"setup_device\\({device}\\): expected a CUDA device with an index"):
        CUDAAccelerator().setup_device(device)


def test_the_tf32_hint_is_given_once_on_ampere_or_newer(fake_gpus):
    fake_gpus(2, capability=(8, 0), name="NVIDIA A100")
    accelerator = CUDAAccelerator()
    with pytest.warns(UserWarning, match=r"cuda:0 \(NVIDIA A100\) has Tensor Cores.*set_float32_matmul_precision"):
        accelerator.setup_device(torch.device("cuda", 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accelerator.setup_device(torch.device("cuda", 1))


def test_no_tf32_hint_before_ampere(fake_gpus):
    fake_gpus(1, capability=(7, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CUDAAccelerator().setup_device(torch.device("cuda", 0))


def test_no_tf32_hint_once_the_user_chose_a_matmul_precision(fake_gpus):
    fake_gpus(1, capability=(9, 0))
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            CUDAAccelerator().setup_device(torch.device("cuda", 0))
    finally:
        torch.set_float32_matmul_precision(previous)


def test_no_tf32_hint_on_other_ranks_than_zero(fake_gpus):
    fake_gpus(2, capability=(8, 6))
    rank_zero_state.rank = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CUDAAccelerator().setup_device(torch.device("cuda", 1))


# -- statistics and teardown ---------------------------------------------------------------------


def test_device_stats_report_allocated_and_reserved_memory():
    stats = CUDAAccelerator().get_device_stats(torch.device("cuda", 0))
    for key in ("allocated_bytes", "reserved_bytes", "max_allocated_bytes", "max_reserved_bytes"):
        assert isinstance(stats[key], int)


def test_teardown_frees_cached_memory_when_cuda_ran(monkeypatch):
    freed = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    CUDAAccelerator().teardown()
    assert freed == [True]


def test_teardown_does_nothing_when_cuda_never_ran(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: pytest.fail("empty_cache would initialise CUDA"))
    CUDAAccelerator().teardown()


# -- bfloat16 support ----------------------------------------------------------------------------

CUDA_DEVICES = [torch.device("cuda", 0), torch.device("cuda", 1)]


def test_bf16_mixed_on_a_gpu_before_ampere_is_an_error_naming_the_gpu(fake_gpus):
    fake_gpus(2, capability=(7, 0), name="Tesla V100-SXM2-16GB")
    with pytest.raises(ValueError) as info:
        CUDAAccelerator().validate_precision(MixedPrecision("bf16-mixed", device="cuda"), CUDA_DEVICES)
    message = str(info.value)
    assert "precision='bf16-mixed' needs GPUs with bfloat16 support (compute capability 8.0" in message
    assert "cuda:0 (Tesla V100-SXM2-16GB) has compute capability 7.0" in message
    assert "Use precision='16-mixed'" in message


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (9, 0), (10, 0)])
def test_bf16_mixed_on_ampere_or_newer_is_accepted(fake_gpus, capability):
    fake_gpus(2, capability=capability)
    CUDAAccelerator().validate_precision(MixedPrecision("bf16-mixed", device="cuda"), CUDA_DEVICES)


@pytest.mark.parametrize(
    "precision",
    [Precision(), HalfPrecision("bf16-true"), HalfPrecision("16-true")],
    ids=["32-true", "bf16-true", "16-true"],
)
def test_other_precisions_are_accepted_before_ampere(fake_gpus, precision):
    fake_gpus(2, capability=(7, 0))
    CUDAAccelerator().validate_precision(precision, CUDA_DEVICES)


def test_bf16_support_is_not_judged_when_the_capability_is_unknown(fake_gpus):
    machine = fake_gpus(2, nvml_works=False)
    CUDAAccelerator().validate_precision(MixedPrecision("bf16-mixed", device="cuda"), CUDA_DEVICES)
    assert machine.lazy_inits == 0
