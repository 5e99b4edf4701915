"""fabric-fsdp registers its names through the `fabric` entry point, cheaply, and they resolve."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fabric_core import Fabric
from fabric_core.precision import DoublePrecision, MixedPrecision
from fabric_fsdp import FSDPPrecision, FSDPStrategy


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_discovering_the_plugin_does_not_import_torch_distributed_fsdp():
    result = _python(
        "import sys\n"
        "import fabric_fsdp, fabric_fsdp.plugin\n"
        "from fabric_core.plugins.manager import get_registries\n"
        "registries = get_registries()\n"
        "assert 'fsdp' in registries.strategies.names()\n"
        "heavy = sorted(m for m in sys.modules if m.startswith('torch.distributed.fsdp'))\n"
        "assert not heavy, heavy\n"
        "print('cheap')"
    )
    assert result.returncode == 0 and "cheap" in result.stdout, result.stderr


def test_fabric_plugins_lists_the_strategies_and_the_consolidator():
    result = subprocess.run(
        [sys.executable, "-m", "fabric_core", "plugins", "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (plugin,) = [p for p in json.loads(result.stdout)["plugins"] if p["distribution"] == "fabric-fsdp"]
    assert plugin["status"] == "ok"
    assert plugin["registered"]["strategies"] == ["fsdp", "fsdp_cpu_offload", "model_parallel"]
    assert plugin["registered"]["consolidators"] == ["fsdp"]
    assert plugin["registered"]["commands"] == []  # `fabric consolidate` is fabric-core's


def test_strategy_fsdp_by_name_is_fsdp_strategy_with_fsdp_precision():
    fabric = Fabric(accelerator="cpu", strategy="fsdp", devices=2, precision="bf16-mixed")
    assert isinstance(fabric.strategy, FSDPStrategy)
    assert fabric.strategy.sharding_strategy == "FULL_SHARD" and not fabric.strategy.cpu_offload
    assert isinstance(fabric.strategy.precision, FSDPPrecision) and fabric.strategy.precision.device == "cpu"


def test_strategy_fsdp_cpu_offload_by_name_offloads():
    assert Fabric(accelerator="cpu", strategy="fsdp_cpu_offload", devices=2).strategy.cpu_offload


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true"])
def test_each_precision_name_becomes_fsdp_precision(precision):
    plugin = Fabric(accelerator="cpu", strategy="fsdp", devices=2, precision=precision).strategy.precision
    assert isinstance(plugin, FSDPPrecision) and plugin.precision == precision


def test_64_true_keeps_cores_double_precision():
    plugin = Fabric(accelerator="cpu", strategy="fsdp", devices=2, precision="64-true").strategy.precision
    assert isinstance(plugin, DoublePrecision)


def test_a_precision_plugin_that_cannot_shard_is_refused_at_construction():
    with pytest.raises(
        TypeError, match=r"FSDPStrategy cannot train with MixedPrecision.*FSDPPrecision\('bf16-mixed'\)"
    ):
        Fabric(accelerator="cpu", strategy="fsdp", devices=2, plugins=MixedPrecision("bf16-mixed", device="cpu"))


def test_model_parallel_by_name_says_it_needs_parallelize_fn():
    with pytest.raises(TypeError, match=r"ModelParallelStrategy needs parallelize_fn.*ModelParallelStrategy\("):
        Fabric(accelerator="cpu", strategy="model_parallel", devices=2)
