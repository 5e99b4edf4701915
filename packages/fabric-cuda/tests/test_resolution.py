"""What ``Fabric(...)`` resolves to on a (pretend) GPU machine: accelerator, devices, strategy, precision.

Nothing here starts a process or touches a GPU: torch.cuda's answers are faked by ``fake_gpus``, which
also fails any call that would initialise CUDA in this, the resolving, process.
"""

from __future__ import annotations

import pytest
import torch

from fabric_core import Fabric
from fabric_core.accelerators import CPUAccelerator
from fabric_core.launchers.multiprocessing import MultiProcessingLauncher
from fabric_core.plugins import get_registries
from fabric_core.precision import MixedPrecision
from fabric_core.strategies import DDPStrategy, SingleDeviceStrategy
from fabric_cuda.accelerator import CUDAAccelerator
from fabric_cuda.dp import DataParallelStrategy


def test_the_plugin_registers_the_cuda_accelerator_and_the_dp_strategy():
    registries = get_registries()
    assert registries.accelerators.load("cuda") is CUDAAccelerator
    assert registries.strategies.load("dp") is DataParallelStrategy
    assert registries.accelerators.get("cuda").distribution == "fabric-cuda"


# -- accelerator and devices ---------------------------------------------------------------------


@pytest.mark.parametrize("accelerator", ["auto", "gpu", "cuda"])
def test_auto_gpu_and_cuda_pick_the_cuda_accelerator_on_a_gpu_machine(fake_gpus, accelerator):
    fake_gpus(1)
    fabric = Fabric(accelerator=accelerator)
    assert isinstance(fabric.accelerator, CUDAAccelerator)
    assert isinstance(fabric.strategy, SingleDeviceStrategy)
    assert fabric.device == torch.device("cuda", 0)


def test_auto_picks_the_cpu_where_no_gpu_is_visible(fake_gpus):
    fake_gpus(0)
    assert isinstance(Fabric().accelerator, CPUAccelerator)


def test_cuda_on_a_machine_without_gpus_is_an_error(fake_gpus):
    fake_gpus(0)
    with pytest.raises(ValueError, match="CUDAAccelerator is not available on this machine"):
        Fabric(accelerator="cuda")


def test_devices_auto_uses_every_visible_gpu(fake_gpus, monkeypatch):
    fake_gpus(4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2,3")
    fabric = Fabric(accelerator="cuda")
    assert fabric.strategy.parallel_devices == [torch.device("cuda", i) for i in range(3)]


def test_selected_gpu_indices_become_the_devices_of_the_processes(fake_gpus):
    fake_gpus(4)
    fabric = Fabric(accelerator="gpu", devices="1, 3")
    assert fabric.strategy.parallel_devices == [torch.device("cuda", 1), torch.device("cuda", 3)]
    assert fabric.device == torch.device("cuda", 1)  # local rank 0


def test_a_bad_devices_value_fails_at_construction_listing_the_gpus(fake_gpus):
    fake_gpus(2, name="NVIDIA L4")
    with pytest.raises(ValueError, match=r"devices=\[0, 2\] asks for GPU 2.*0 \(NVIDIA L4\), 1 \(NVIDIA L4\)"):
        Fabric(accelerator="cuda", devices=[0, 2])


# -- strategy ------------------------------------------------------------------------------------


def test_several_gpus_choose_ddp_over_nccl_with_one_process_per_gpu(fake_gpus):
    fake_gpus(2)
    fabric = Fabric(accelerator="cuda", devices=2)
    strategy = fabric.strategy
    assert isinstance(strategy, DDPStrategy)
    assert strategy.process_group_backend == "nccl"
    assert strategy.num_processes == 2
    assert strategy.parallel_devices == [torch.device("cuda", 0), torch.device("cuda", 1)]


def test_an_explicit_process_group_backend_wins_over_nccl(fake_gpus):
    fake_gpus(2)
    fabric = Fabric(accelerator="cuda", devices=2, strategy=DDPStrategy(process_group_backend="gloo"))
    assert fabric.strategy.process_group_backend == "gloo"


def test_resolving_a_forked_gpu_run_never_initialises_cuda(fake_gpus):
    machine = fake_gpus(2)
    initialised_before = torch.cuda.is_initialized()
    fabric = Fabric(accelerator="cuda", devices=2, strategy="ddp_fork", precision="16-mixed")
    assert isinstance(fabric.strategy.launcher, MultiProcessingLauncher)
    assert machine.lazy_inits == 0
    assert torch.cuda.is_initialized() == initialised_before
    # The gradient scaler asked torch.cuda.is_available(), which must have gone through NVML.
    assert machine.availability_checks and set(machine.availability_checks) == {"1"}
    assert machine.set_devices == []  # devices are selected in the workers, not here


def test_dp_runs_one_process_over_the_selected_gpus(fake_gpus):
    fake_gpus(4)
    fabric = Fabric(accelerator="cuda", strategy="dp", devices=[2, 3])
    strategy = fabric.strategy
    assert isinstance(strategy, DataParallelStrategy)
    assert strategy.device_ids == [2, 3]
    assert fabric.device == torch.device("cuda", 2)
    assert strategy.launcher is None and not strategy.needs_launch
    assert (fabric.world_size, fabric.global_rank) == (1, 0)


def test_dp_on_the_cpu_is_an_error_pointing_to_ddp():
    with pytest.raises(ValueError, match=r"strategy='dp' splits each batch over CUDA GPUs.*strategy='ddp'"):
        Fabric(accelerator="cpu", strategy="dp", devices=2)


def test_dp_on_several_nodes_is_an_error(fake_gpus):
    fake_gpus(2)
    with pytest.raises(ValueError, match="num_nodes=2 was requested"):
        Fabric(accelerator="cuda", strategy="dp", devices=2, num_nodes=2)


# -- precision -----------------------------------------------------------------------------------


def test_16_mixed_autocasts_on_cuda_with_a_cuda_gradient_scaler(fake_gpus):
    fake_gpus(1)
    precision = Fabric(accelerator="cuda", precision="16-mixed").precision_plugin
    assert isinstance(precision, MixedPrecision)
    assert precision.device == "cuda"
    assert precision.scaler is not None and precision.scaler._device == "cuda"
    assert precision.scaler.is_enabled()


def test_bf16_mixed_autocasts_on_cuda_without_a_scaler(fake_gpus):
    fake_gpus(1, capability=(9, 0))
    precision = Fabric(accelerator="gpu", precision="bf16-mixed").precision_plugin
    assert isinstance(precision, MixedPrecision)
    assert (precision.device, precision.scaler) == ("cuda", None)


def test_bf16_mixed_on_a_gpu_without_bf16_fails_at_construction(fake_gpus):
    fake_gpus(1, capability=(7, 5), name="Tesla T4")
    with pytest.raises(ValueError, match=r"cuda:0 \(Tesla T4\) has compute capability 7.5"):
        Fabric(accelerator="cuda", precision="bf16-mixed")
