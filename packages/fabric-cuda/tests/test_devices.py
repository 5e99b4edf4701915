"""Reading ``devices`` for CUDA, counting GPUs, and finding usable ones (on the CPU, with fake GPUs)."""

from __future__ import annotations

import pytest
import torch

from fabric_cuda import devices as devices_module
from fabric_cuda.accelerator import CUDAAccelerator
from fabric_cuda.devices import find_usable_cuda_devices, parse_cuda_devices


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        (1, [0]),
        (2, [0, 1]),
        ("2", [0, 1]),
        (" 3 ", [0, 1, 2]),
        (-1, [0, 1, 2, 3]),
        ("-1", [0, 1, 2, 3]),
        ("auto", [0, 1, 2, 3]),
        ([1, 3], [1, 3]),
        ((0, 2), [0, 2]),
        ([3, 0], [3, 0]),
        ("1, 3", [1, 3]),
        ("0,1", [0, 1]),
        ("0,", [0]),
    ],
    ids=repr,
)
def test_devices_forms_select_these_gpus(fake_gpus, devices, expected):
    fake_gpus(4)
    assert parse_cuda_devices(devices) == expected


def test_parallel_devices_are_cuda_devices_with_the_selected_indices(fake_gpus):
    fake_gpus(4)
    assert CUDAAccelerator.get_parallel_devices(CUDAAccelerator.parse_devices("1,3")) == [
        torch.device("cuda", 1),
        torch.device("cuda", 3),
    ]


def test_auto_device_count_is_every_visible_gpu(fake_gpus):
    fake_gpus(3)
    assert CUDAAccelerator.auto_device_count() == 3
    assert CUDAAccelerator.is_available()


def test_no_gpu_means_not_available(fake_gpus):
    fake_gpus(0)
    assert CUDAAccelerator.is_available() is False


# -- CUDA_VISIBLE_DEVICES ------------------------------------------------------------------------


def test_cuda_visible_devices_renumbers_the_gpus_from_zero(fake_gpus, monkeypatch):
    fake_gpus(4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert parse_cuda_devices(-1) == [0, 1]
    assert CUDAAccelerator.auto_device_count() == 2


def test_a_gpu_hidden_by_cuda_visible_devices_is_rejected_naming_the_mask(fake_gpus, monkeypatch):
    fake_gpus(4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    with pytest.raises(ValueError, match=r"GPU 2, but this process sees 2 GPUs") as info:
        parse_cuda_devices([0, 2])
    assert "CUDA_VISIBLE_DEVICES='1,3'" in str(info.value)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("devices", [0, "0", [], ()], ids=repr)
def test_selecting_no_gpu_is_an_error_pointing_to_the_cpu_accelerator(fake_gpus, devices):
    fake_gpus(2)
    with pytest.raises(ValueError, match="selects no GPU") as info:
        parse_cuda_devices(devices)
    assert "accelerator='cpu'" in str(info.value)
    assert f"devices={devices!r}" in str(info.value)


@pytest.mark.parametrize(("devices", "repeated"), [([0, 0], "GPU 0"), ("1,1", "GPU 1"), ([0, 1, 0, 1], "GPUs 0, 1")])
def test_a_gpu_listed_twice_is_an_error_naming_it(fake_gpus, devices, repeated):
    fake_gpus(2)
    with pytest.raises(ValueError, match=f"names {repeated} more than once"):
        parse_cuda_devices(devices)


def test_a_missing_gpu_index_is_an_error_listing_the_machines_gpus_by_name(fake_gpus):
    fake_gpus(2, name="NVIDIA H100 80GB HBM3")
    with pytest.raises(ValueError) as info:
        parse_cuda_devices([0, 5])
    message = str(info.value)
    assert "devices=[0, 5] asks for GPU 5" in message
    assert "2 GPUs: 0 (NVIDIA H100 80GB HBM3), 1 (NVIDIA H100 80GB HBM3)" in message


def test_without_nvml_the_gpus_are_listed_by_index(fake_gpus):
    fake_gpus(2, nvml_works=False)
    with pytest.raises(ValueError, match=r"sees 2 GPUs: 0, 1\. "):
        parse_cuda_devices("0,2")


def test_more_gpus_than_there_are_is_an_error_saying_how_many_exist(fake_gpus):
    fake_gpus(2)
    with pytest.raises(ValueError, match=r"devices=3 asks for 3 GPUs, but this process sees 2 GPUs.*at most 2"):
        parse_cuda_devices(3)


def test_all_gpus_on_a_machine_without_any_is_an_error(fake_gpus):
    fake_gpus(0)
    with pytest.raises(ValueError, match="devices=-1 asks for every GPU, but this process sees no GPU"):
        parse_cuda_devices(-1)


@pytest.mark.parametrize("devices", ["nonsense", "0,a", "1.5", -2, [0, -1], [0, "1"], [True]], ids=repr)
def test_malformed_values_are_value_errors_naming_the_value(fake_gpus, devices):
    fake_gpus(2)
    with pytest.raises(ValueError, match="is not valid for the CUDA accelerator") as info:
        parse_cuda_devices(devices)
    assert f"devices={devices!r}" in str(info.value)


@pytest.mark.parametrize("devices", [2.0, True, None, {0, 1}], ids=repr)
def test_values_of_the_wrong_type_are_type_errors_naming_the_type(devices):
    with pytest.raises(TypeError, match=f"devices={devices!r} \\({type(devices).__name__}\\)"):
        parse_cuda_devices(devices)


# -- counting without CUDA -----------------------------------------------------------------------


def test_counting_and_parsing_never_initialise_cuda(fake_gpus):
    machine = fake_gpus(2)
    CUDAAccelerator.is_available()
    CUDAAccelerator.get_parallel_devices(CUDAAccelerator.parse_devices(-1))
    assert machine.lazy_inits == 0


# -- find_usable_cuda_devices --------------------------------------------------------------------


@pytest.fixture
def gpu_1_is_busy(fake_gpus, monkeypatch):
    fake_gpus(3)
    monkeypatch.setattr(devices_module, "_can_allocate_on", lambda index: index != 1)


@pytest.mark.parametrize(("num_devices", "expected"), [(1, [0]), (2, [0, 2]), (-1, [0, 2])])
def test_find_usable_devices_skips_gpus_that_cannot_allocate(gpu_1_is_busy, num_devices, expected):
    assert find_usable_cuda_devices(num_devices) == expected


def test_find_usable_devices_fails_when_too_few_are_usable_naming_the_busy_ones(gpu_1_is_busy):
    with pytest.raises(RuntimeError, match=r"found 2 usable GPUs \(\[0, 2\]\); GPUs \[1\] could not be used"):
        find_usable_cuda_devices(3)


def test_find_usable_devices_fails_when_more_are_asked_than_exist(fake_gpus):
    fake_gpus(2)
    with pytest.raises(ValueError, match="looks for 4 GPUs, but this process sees 2 GPUs"):
        find_usable_cuda_devices(4)


def test_find_usable_devices_on_a_machine_without_gpus_fails(fake_gpus):
    fake_gpus(0)
    with pytest.raises(ValueError, match="looks for any GPU, but this process sees no GPU"):
        find_usable_cuda_devices()


@pytest.mark.parametrize("num_devices", [0, -3, 1.0, True])
def test_find_usable_devices_rejects_a_bad_count(num_devices):
    with pytest.raises(ValueError, match=f"num_devices={num_devices!r}"):
        find_usable_cuda_devices(num_devices)
