"""Throughput, ThroughputMonitor, measure_flops and the peak-FLOPs tables, against hand-computed numbers."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch

from fabric_core import Fabric
from fabric_core.loggers import Logger
from fabric_core.utilities.rank_zero import rank_zero_state
from fabric_core.utilities.throughput import (
    CUDA_FLOPS,
    TPU_FLOPS,
    Throughput,
    ThroughputMonitor,
    _compute_dtype,
    get_available_flops,
    measure_flops,
)

# -- Throughput: the numbers ------------------------------------------------------------------------


def _three_updates(throughput: Throughput) -> None:
    # 1 batch of 4 samples of 10 items per second, 10 FLOPs per device and update
    for i, t in enumerate((0.0, 1.0, 2.0), start=1):
        throughput.update(time=t, batches=i, samples=4 * i, lengths=40 * i, flops=10)


def test_rates_over_a_full_window_on_several_devices():
    throughput = Throughput(available_flops=20, world_size=2, window_size=3, separator="|")
    _three_updates(throughput)
    assert list(throughput.compute().items()) == [
        ("time", 2.0),
        ("batches", 3),
        ("samples", 12),
        ("lengths", 120),
        ("device|batches_per_sec", 1.0),
        ("device|samples_per_sec", 4.0),
        ("batches_per_sec", 2.0),
        ("samples_per_sec", 8.0),
        ("device|items_per_sec", 40.0),
        ("items_per_sec", 80.0),
        # each update's FLOPs are the work since the previous one: 2 updates x 10 x 2 devices in 2 s
        ("flops_per_sec", 20.0),
        ("device|flops_per_sec", 10.0),
        ("device|mfu", 0.5),
    ]


def test_one_device_has_no_global_rates():
    throughput = Throughput(window_size=3)
    _three_updates(throughput)
    assert throughput.compute() == {
        "time": 2.0,
        "batches": 3,
        "samples": 12,
        "lengths": 120,
        "device/batches_per_sec": 1.0,
        "device/samples_per_sec": 4.0,
        "device/items_per_sec": 40.0,
        "device/flops_per_sec": 10.0,
    }


def test_rates_appear_only_once_the_window_is_full():
    throughput = Throughput(window_size=3)
    throughput.update(time=1.0, batches=1, samples=2)
    throughput.update(time=2.0, batches=2, samples=4)
    assert throughput.compute() == {"time": 2.0, "batches": 2, "samples": 4}


def test_the_window_slides_over_the_latest_updates():
    throughput = Throughput(window_size=2)
    throughput.update(time=1.0, batches=1, samples=1)
    throughput.update(time=2.0, batches=2, samples=3)
    throughput.update(time=6.0, batches=10, samples=11)  # 8 batches and samples in 4 s
    metrics = throughput.compute()
    assert metrics["device/batches_per_sec"] == 2.0
    assert metrics["device/samples_per_sec"] == 2.0


def test_mfu_needs_available_flops():
    throughput = Throughput(window_size=3)
    _three_updates(throughput)
    assert "device/mfu" not in throughput.compute()


def test_reset_forgets_every_update():
    throughput = Throughput(window_size=3)
    _three_updates(throughput)
    throughput.reset()
    throughput.update(time=0.5, batches=1, samples=1)  # smaller than before the reset: allowed
    assert throughput.compute() == {"time": 0.5, "batches": 1, "samples": 1}


# -- Throughput: bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["time", "batches", "samples"])
def test_a_total_that_does_not_grow_is_a_value_error_naming_it(name):
    throughput = Throughput()
    first = {"time": 1.0, "batches": 1, "samples": 3}
    throughput.update(**first)
    repeated = first[name]
    with pytest.raises(ValueError, match=rf"update\({name}={repeated}\).*running total.*had {name}={repeated}"):
        throughput.update(**{"time": 2.0, "batches": 2, "samples": 4, name: repeated})


def test_a_rejected_update_changes_nothing():
    throughput = Throughput(window_size=2)
    throughput.update(time=1.0, batches=1, samples=1)
    with pytest.raises(ValueError):
        throughput.update(time=2.0, batches=1, samples=2)
    throughput.update(time=3.0, batches=3, samples=3)
    assert throughput.compute()["device/batches_per_sec"] == 1.0  # (3 - 1) / (3 - 1): the rejected one is gone


def test_fewer_samples_than_batches_is_a_value_error():
    with pytest.raises(ValueError, match=r"batches=2, samples=1\): samples must be at least batches"):
        Throughput().update(time=1.0, batches=2, samples=1)


def test_fewer_lengths_than_samples_is_a_value_error():
    with pytest.raises(ValueError, match=r"samples=4, lengths=3\): lengths .* must be at least samples"):
        Throughput().update(time=1.0, batches=1, samples=4, lengths=3)


def test_lengths_on_some_updates_only_is_a_runtime_error():
    throughput = Throughput()
    throughput.update(time=1.0, batches=1, samples=1)
    with pytest.raises(RuntimeError, match="lengths were passed in 1 of the last 2 updates"):
        throughput.update(time=2.0, batches=2, samples=2, lengths=2)


def test_update_takes_keyword_arguments_only():
    with pytest.raises(TypeError):
        Throughput().update(1.0, 1, 1)  # type: ignore[misc]


@pytest.mark.parametrize("window_size", [1, 0, 2.5, True])
def test_a_window_of_fewer_than_two_updates_is_refused(window_size):
    with pytest.raises(ValueError, match=rf"window_size={window_size!r}\).*at least 2"):
        Throughput(window_size=window_size)


@pytest.mark.parametrize("world_size", [0, -1, 1.5])
def test_a_world_size_below_one_is_refused(world_size):
    with pytest.raises(ValueError, match=rf"world_size={world_size!r}\).*at least 1"):
        Throughput(world_size=world_size)


def test_compute_before_any_update_says_so():
    with pytest.raises(RuntimeError, match=r"needs at least one update\(\) first"):
        Throughput().compute()


# -- ThroughputMonitor ---------------------------------------------------------------------------------


class RecordingLogger(Logger):
    name = "recording"
    version = 0

    def __init__(self) -> None:
        self.rows: list[tuple[int | None, dict]] = []

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_monitor_logs_the_metrics_through_fabric_with_increasing_steps():
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", devices=1, loggers=[logger])
    monitor = ThroughputMonitor(fabric, window_size=2)
    monitor.update(time=1.0, batches=1, samples=2)
    first = monitor.compute_and_log()
    monitor.update(time=3.0, batches=2, samples=4)
    second = monitor.compute_and_log()
    assert first == {"time": 1.0, "batches": 1, "samples": 2}
    assert second == {
        "time": 3.0,
        "batches": 2,
        "samples": 4,
        "device/batches_per_sec": 0.5,
        "device/samples_per_sec": 1.0,
    }
    assert logger.rows == [(0, first), (1, second)]


def test_monitor_logs_at_the_step_given():
    logger = RecordingLogger()
    monitor = ThroughputMonitor(Fabric(accelerator="cpu", devices=1, loggers=[logger]))
    monitor.update(time=1.0, batches=1, samples=1)
    monitor.compute_and_log(step=50)
    monitor.update(time=2.0, batches=2, samples=2)
    monitor.compute_and_log()
    assert [step for step, _ in logger.rows] == [50, 51]


def test_monitor_takes_world_size_from_fabric_and_has_no_peak_flops_on_cpu():
    monitor = ThroughputMonitor(Fabric(accelerator="cpu", devices=1))
    assert monitor.world_size == 1
    assert monitor.available_flops is None


def test_monitor_does_nothing_and_returns_empty_metrics_off_rank_zero():
    logger = RecordingLogger()
    monitor = ThroughputMonitor(Fabric(accelerator="cpu", devices=1, loggers=[logger]))
    rank_zero_state.rank = 1  # the root conftest restores it
    monitor.update(time=1.0, batches=1, samples=1)
    assert monitor.compute() == {}
    assert monitor.compute_and_log() == {}
    rank_zero_state.rank = 0
    assert logger.rows == []
    with pytest.raises(RuntimeError, match="at least one update"):
        monitor.compute()  # the update on "rank 1" was not recorded


@pytest.mark.parametrize("name", ["available_flops", "world_size"])
def test_monitor_refuses_what_fabric_decides(name):
    with pytest.raises(TypeError, match=rf"{name} comes from the Fabric object"):
        ThroughputMonitor(Fabric(accelerator="cpu", devices=1), **{name: 2})


def test_monitor_before_launch_of_a_multi_process_run_is_refused():
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    with pytest.raises(RuntimeError, match=r"world size is only known after fabric.launch\(\)"):
        ThroughputMonitor(fabric)


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [
        ("32-true", torch.float32),
        ("64-true", torch.float64),
        ("16-mixed", torch.float16),
        ("bf16-mixed", torch.bfloat16),
        ("16-true", torch.float16),
        ("bf16-true", torch.bfloat16),
    ],
)
def test_the_compute_dtype_follows_the_precision(precision, dtype):
    assert _compute_dtype(Fabric(accelerator="cpu", devices=1, precision=precision).strategy.precision) is dtype


def test_the_compute_dtype_of_plugins_comes_from_their_attributes():
    assert _compute_dtype(types.SimpleNamespace(compute_dtype=torch.bfloat16, precision="bf16-mixed")) is torch.bfloat16
    assert _compute_dtype(types.SimpleNamespace(dtype=torch.float16, precision="nf4")) is torch.float16
    assert _compute_dtype(types.SimpleNamespace(precision="transformer-engine")) is torch.int8
    assert _compute_dtype(types.SimpleNamespace(precision="fp8-weights")) is torch.float32


# -- measure_flops -------------------------------------------------------------------------------------


def test_measure_flops_counts_a_linear_layer_forward_and_backward():
    with torch.device("meta"):
        model = torch.nn.Linear(4, 3)
        x = torch.randn(2, 4)
    # a (2x4) @ (4x3) matmul is 2 * 2 * 4 * 3 FLOPs; backward computes the weight gradient (same size) only,
    # since x needs no gradient
    assert measure_flops(model, lambda: model(x)) == 48
    assert measure_flops(model, lambda: model(x), lambda y: y.sum()) == 96


def test_measure_flops_refuses_a_forward_that_is_not_callable():
    with pytest.raises(TypeError, match="expected a function that runs the forward"):
        measure_flops(torch.nn.Linear(1, 1), torch.ones(1))  # type: ignore[arg-type]


# -- get_available_flops -------------------------------------------------------------------------------


@pytest.fixture
def fake_gpu(monkeypatch):
    def use(name: str, capability: tuple[int, int] = (8, 0)) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    return use


CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("name", "dtype", "flops"),
    [
        ("NVIDIA A100-SXM4-80GB", torch.bfloat16, 312_000_000_000_000),
        ("NVIDIA H100 80GB HBM3", torch.float16, 989_400_000_000_000),
        ("NVIDIA H100 PCIe", torch.int8, 1_513_000_000_000_000),
        ("NVIDIA H100 NVL", torch.float64, 67_000_000_000_000),
        ("NVIDIA L4", torch.bfloat16, 121_000_000_000_000),
        ("NVIDIA GeForce RTX 4080 SUPER", torch.float16, 52_200_000_000_000),
        ("NVIDIA GeForce RTX 3090 Ti", torch.int8, 320_000_000_000_000),
        ("NVIDIA GeForce RTX 4090", "int4", 1_321_200_000_000_000),
        ("NVIDIA RTX A6000", torch.bfloat16, 38_700_000_000_000),
        ("Tesla T4", torch.float16, 65_000_000_000_000),
        ("Tesla V100-SXM2-16GB", torch.float16, 125_000_000_000_000),
        ("Tesla V100S-PCIE-32GB", torch.float64, 8_200_000_000_000),
    ],
)
def test_peak_flops_of_known_gpus(fake_gpu, name, dtype, flops):
    fake_gpu(name)
    assert get_available_flops(CUDA, dtype) == flops


def test_float32_counts_as_tf32_on_ampere_unless_matmul_precision_is_highest(fake_gpu, monkeypatch):
    fake_gpu("NVIDIA A100-SXM4-40GB", capability=(8, 0))
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert get_available_flops(CUDA, torch.float32) == 156_000_000_000_000
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    assert get_available_flops(CUDA, torch.float32) == 19_500_000_000_000


def test_float32_is_plain_float32_before_ampere(fake_gpu, monkeypatch):
    fake_gpu("Tesla V100-PCIE-32GB", capability=(7, 0))
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert get_available_flops(CUDA, torch.float32) == 14_000_000_000_000


@pytest.mark.parametrize(
    ("name", "dtype", "message"),
    [
        ("Tesla K80", torch.float32, "FLOPs not found for 'Tesla K80'"),
        ("NVIDIA H200", torch.bfloat16, "FLOPs not found for 'NVIDIA H200', chip is 'nvidia h200'"),
        ("Tesla T4", torch.bfloat16, "'Tesla T4' does not support torch.bfloat16"),
    ],
)
def test_an_unknown_gpu_or_dtype_warns_and_gives_none(fake_gpu, name, dtype, message):
    fake_gpu(name)
    with pytest.warns(UserWarning, match=message):
        assert get_available_flops(CUDA, dtype) is None


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_other_devices_give_none_without_a_warning(device):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_available_flops(torch.device(device), torch.float32) is None


def test_the_device_must_be_a_torch_device():
    with pytest.raises(TypeError, match=r"expected a torch\.device"):
        get_available_flops("cuda", torch.float32)  # type: ignore[arg-type]


@pytest.fixture
def fake_tpu(monkeypatch):
    def use(environment: dict) -> None:
        tpu = types.ModuleType("torch_xla._internal.tpu")
        tpu.get_tpu_env = lambda: environment
        internal = types.ModuleType("torch_xla._internal")
        internal.tpu = tpu
        root = types.ModuleType("torch_xla")
        root._internal = internal
        monkeypatch.setitem(sys.modules, "torch_xla", root)
        monkeypatch.setitem(sys.modules, "torch_xla._internal", internal)
        monkeypatch.setitem(sys.modules, "torch_xla._internal.tpu", tpu)

    return use


@pytest.mark.parametrize(
    ("environment", "flops"),
    [
        ({"TYPE": "V4"}, 275_000_000_000_000),
        ({"ACCELERATOR_TYPE": "v5litepod-16"}, 197_000_000_000_000),
        ({"TYPE": "", "ACCELERATOR_TYPE": "v3-8"}, 123_000_000_000_000),
    ],
)
def test_peak_flops_of_tpus_by_generation(fake_tpu, environment, flops):
    fake_tpu(environment)
    assert get_available_flops(torch.device("xla"), torch.bfloat16) == flops


def test_an_unknown_tpu_warns_and_gives_none(fake_tpu):
    fake_tpu({"TYPE": "V9"})
    with pytest.warns(UserWarning, match="FLOPs not found for TPU 'V9'"):
        assert get_available_flops(torch.device("xla"), torch.bfloat16) is None


def test_the_tables_hold_lightnings_chips():
    assert len(CUDA_FLOPS) == 29
    assert CUDA_FLOPS["h100 sxm"][torch.bfloat16] == 989.4e12
    assert CUDA_FLOPS["a10g"]["tfloat32"] == 62.5e12
    assert TPU_FLOPS == {"v2": 45e12, "v3": 123e12, "v4": 275e12, "v5litepod": 197e12}


def test_lightnings_private_table_names_are_the_same_tables():
    from fabric_core.utilities import throughput

    assert throughput._CUDA_FLOPS is CUDA_FLOPS
    assert throughput._TPU_FLOPS is TPU_FLOPS
