"""Training on real CUDA GPUs. Marked ``gpu``: skipped where torch sees no GPU (CI), run where one is lent.

Run them alone with ``pytest packages/fabric-cuda/tests -m gpu``.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from fabric_core import Fabric
from fabric_core.precision import MixedPrecision
from fabric_core.testing import PrecisionConformance, StrategyConformance
from fabric_cuda import accelerator as accelerator_module
from fabric_cuda import find_usable_cuda_devices
from fabric_cuda.accelerator import CUDAAccelerator
from fabric_cuda.dp import DataParallelStrategy

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture
def bf16_gpu() -> None:
    """Skip where GPU 0 has no bfloat16 tensor cores (asked at run time: collection must not start CUDA)."""
    if torch.cuda.get_device_capability(0) < (8, 0):
        pytest.skip("needs a GPU with bfloat16 support (compute capability 8.0 or newer)")


@pytest.fixture(autouse=True)
def _exact_float32_matmuls():
    """TF32 off, so that 32-true on the GPU can be compared with the CPU."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


def _train(fabric: Fabric, steps: int = 40, optimizer: str = "sgd") -> tuple[list[float], dict[str, torch.Tensor]]:
    """Train a small MLP on a fixed regression batch; return the losses and the final parameters (on the CPU)."""
    fabric.launch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model, opt = fabric.setup(model, opt)
    inputs = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    target = inputs[:, :4].sum(dim=1, keepdim=True) - 0.5 * inputs[:, 4:8].sum(dim=1, keepdim=True)
    inputs, target = fabric.to_device((inputs, target))
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), target)
        fabric.backward(loss)
        opt.step()
        losses.append(loss.item())
    parameters = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    fabric.teardown()
    return losses, parameters


# -- one GPU -------------------------------------------------------------------------------------


def test_32_true_on_one_gpu_equals_the_cpu_within_tolerance():
    cpu_losses, cpu_parameters = _train(Fabric(accelerator="cpu", devices=1))
    gpu_losses, gpu_parameters = _train(Fabric(accelerator="cuda", devices=1))
    torch.testing.assert_close(gpu_losses, cpu_losses, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu_parameters, cpu_parameters, rtol=1e-4, atol=1e-5)


def test_the_model_and_batches_live_on_the_selected_gpu():
    fabric = Fabric(accelerator="gpu", devices=[torch.cuda.device_count() - 1])
    fabric.launch()
    model = fabric.setup(torch.nn.Linear(2, 1))
    assert fabric.device == torch.device("cuda", torch.cuda.device_count() - 1)
    assert torch.cuda.current_device() == fabric.device.index
    assert next(model.parameters()).device == fabric.device
    assert fabric.to_device(torch.zeros(2)).device == fabric.device
    fabric.teardown()


def test_16_mixed_trains_and_converges_with_a_cuda_gradient_scaler():
    fabric = Fabric(accelerator="cuda", devices=1, precision="16-mixed")
    precision = fabric.precision_plugin
    assert isinstance(precision, MixedPrecision) and precision.scaler is not None
    losses, _ = _train(fabric, steps=150, optimizer="adam")
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    assert precision.scaler.get_scale() > 0


@pytest.mark.usefixtures("bf16_gpu")
def test_bf16_mixed_trains_and_converges():
    losses, _ = _train(Fabric(accelerator="cuda", devices=1, precision="bf16-mixed"), steps=150, optimizer="adam")
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.1 * losses[0], losses[::10]


def test_device_stats_and_teardown_free_cached_memory():
    accelerator = CUDAAccelerator()
    device = torch.device("cuda", 0)
    accelerator.setup_device(device)
    block = torch.empty(64 * 2**20, dtype=torch.uint8, device=device)
    stats = accelerator.get_device_stats(device)
    assert stats["allocated_bytes"] >= block.numel() and stats["max_allocated_bytes"] >= block.numel()
    assert "allocated_bytes.all.current" in stats
    del block
    reserved = torch.cuda.memory_reserved(device)
    accelerator.teardown()
    assert torch.cuda.memory_reserved(device) < reserved


def test_the_tf32_hint_is_given_on_ampere_or_newer(monkeypatch):
    monkeypatch.setattr(accelerator_module, "_tf32_hint_given", False)
    capability = torch.cuda.get_device_capability(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CUDAAccelerator().setup_device(torch.device("cuda", 0))
    hints = [w for w in caught if "set_float32_matmul_precision" in str(w.message)]
    assert len(hints) == (1 if capability >= (8, 0) else 0)


def test_find_usable_cuda_devices_finds_this_gpu():
    assert find_usable_cuda_devices(1) == [0]


class TestCUDAFloat16MixedPrecision(PrecisionConformance):
    precision_factory = functools.partial(MixedPrecision, "16-mixed", device="cuda")
    device = "cuda"


@pytest.mark.usefixtures("bf16_gpu")
class TestCUDABFloat16MixedPrecision(PrecisionConformance):
    precision_factory = functools.partial(MixedPrecision, "bf16-mixed", device="cuda")
    device = "cuda"


# -- DataParallel --------------------------------------------------------------------------------


class TestDataParallelStrategy(StrategyConformance):
    strategy_factory = DataParallelStrategy
    accelerator = "cuda"


def test_dp_on_one_gpu_warns_that_no_backward_sync_does_nothing():
    fabric = Fabric(accelerator="cuda", strategy="dp", devices=1)
    model = fabric.setup(torch.nn.Linear(2, 1))
    with pytest.warns(UserWarning, match="DataParallelStrategy cannot skip gradient synchronisation"):
        fabric.no_backward_sync(model)
    fabric.teardown()


@needs_two_gpus
def test_dp_over_two_gpus_trains_like_one_gpu():
    one_losses, one_parameters = _train(Fabric(accelerator="cuda", devices=1))
    fabric = Fabric(accelerator="cuda", strategy="dp", devices=2)
    dp_losses, dp_parameters = _train(fabric)
    assert isinstance(fabric.strategy, DataParallelStrategy) and fabric.strategy.device_ids == [0, 1]
    assert dp_losses[-1] < dp_losses[0]
    torch.testing.assert_close(dp_losses, one_losses, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dp_parameters, one_parameters, rtol=1e-4, atol=1e-5)


# -- processes -----------------------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_") and k != "PYTORCH_NVML_BASED_CUDA_CHECK"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, cwd=SCRIPTS, check=False
    )


def test_fabric_run_on_one_gpu_trains():
    result = _run("-m", "fabric_core", "run", "--accelerator", "cuda", "--devices", "1", "cli_train.py")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank=0 device=cuda:0 current=0" in result.stdout
    assert "decreased=True" in result.stdout


@needs_two_gpus
def test_fabric_run_on_two_gpus_gives_each_rank_its_own_gpu_over_nccl():
    result = _run("-m", "fabric_core", "run", "--accelerator", "gpu", "--devices", "2", "cli_train.py")
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank={rank} device=cuda:{rank} current={rank} backend=nccl indices=[0, 1]" in result.stdout


@pytest.mark.parametrize("precision", ["32-true", "16-mixed"])
def test_a_forked_run_resolved_in_the_parent_can_still_use_the_gpu(precision):
    result = _run("fork_train.py", "1", precision)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "initialised_before_fork=False device=cuda:0 decreased=True" in result.stdout
