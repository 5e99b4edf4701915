"""How Fabric(...) turns its flags into an accelerator, devices, environment, strategy and precision."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from fabric_core import Fabric
from fabric_core.accelerators import Accelerator, CPUAccelerator
from fabric_core.environments.local import LocalEnvironment
from fabric_core.io import TorchCheckpointIO
from fabric_core.precision import DoublePrecision, MixedPrecision, Precision
from fabric_core.strategies import DDPStrategy, SingleDeviceStrategy


def test_defaults_on_a_cpu_machine_are_one_cpu_process_in_32_bit():
    fabric = Fabric()
    assert isinstance(fabric.accelerator, CPUAccelerator)
    assert isinstance(fabric.strategy, SingleDeviceStrategy)
    assert type(fabric.precision_plugin) is Precision
    assert fabric.device == torch.device("cpu")
    assert (fabric.global_rank, fabric.local_rank, fabric.node_rank, fabric.world_size) == (0, 0, 0, 1)
    assert fabric.is_global_zero


def test_several_cpu_devices_choose_ddp_with_one_process_per_device():
    fabric = Fabric(accelerator="cpu", devices=2)
    assert isinstance(fabric.strategy, DDPStrategy)
    assert fabric.strategy.num_processes == 2
    assert fabric.strategy.process_group_backend == "gloo"
    assert isinstance(fabric.strategy.cluster_environment, LocalEnvironment)


def test_several_nodes_choose_ddp_even_with_one_device():
    fabric = Fabric(accelerator="cpu", devices=1, num_nodes=2)
    assert isinstance(fabric.strategy, DDPStrategy)
    assert fabric.strategy.num_nodes == 2
    assert fabric.strategy.distributed_sampler_kwargs == {"num_replicas": 2, "rank": 0}


@pytest.mark.parametrize("devices", [1, "1", "auto", " 2 "])
def test_cpu_devices_accept_counts_and_their_strings(devices):
    Fabric(accelerator="cpu", devices=devices)


@pytest.mark.parametrize("devices", [0, -1, [0, 1], "0,1", "many"])
def test_cpu_devices_reject_indices_and_nonsense_naming_the_value(devices):
    with pytest.raises(ValueError, match="CPU accelerator"):
        Fabric(accelerator="cpu", devices=devices)


@pytest.mark.parametrize(
    ("name", "start_method", "find_unused"),
    [
        ("ddp", "popen", None),
        ("ddp_spawn", "spawn", None),
        ("ddp_fork", "fork", None),
        ("ddp_notebook", "fork", None),
        ("ddp_find_unused_parameters_true", "popen", True),
    ],
)
def test_ddp_family_names_configure_the_ddp_strategy(name, start_method, find_unused):
    fabric = Fabric(accelerator="cpu", devices=2, strategy=name)
    strategy = fabric.strategy
    assert isinstance(strategy, DDPStrategy)
    assert strategy.start_method == start_method
    assert strategy._ddp_kwargs.get("find_unused_parameters") == find_unused


def test_ddp_keyword_arguments_and_process_group_settings_pass_through():
    strategy = DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=42), static_graph=True)
    fabric = Fabric(accelerator="cpu", devices=2, strategy=strategy)
    assert fabric.strategy is strategy
    assert strategy.timeout == timedelta(seconds=42)
    assert strategy._ddp_kwargs == {"static_graph": True}


def test_ddp_keyword_unknown_to_distributed_data_parallel_is_rejected_at_construction():
    with pytest.raises(TypeError, match="bucket_size_mb"):
        DDPStrategy(bucket_size_mb=25)


def test_ddp_timeout_must_be_a_timedelta():
    with pytest.raises(TypeError, match="timedelta"):
        DDPStrategy(timeout=30)


def test_ddp_start_method_is_validated():
    with pytest.raises(ValueError, match="threads"):
        DDPStrategy(start_method="threads")


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("32-true", "32-true"),
        (32, "32-true"),
        ("32", "32-true"),
        ("64-true", "64-true"),
        (64, "64-true"),
        ("64", "64-true"),
        ("16-true", "16-true"),
        ("bf16-true", "bf16-true"),
        ("16-mixed", "16-mixed"),
        ("bf16-mixed", "bf16-mixed"),
    ],
)
def test_precision_names_and_aliases(flag, expected):
    assert Fabric(accelerator="cpu", precision=flag).precision_plugin.precision == expected


@pytest.mark.parametrize(("flag", "expected"), [(16, "16-mixed"), ("16", "16-mixed"), ("bf16", "bf16-mixed")])
def test_historical_precision_spellings_warn_and_map(flag, expected):
    with pytest.warns(UserWarning, match=expected):
        fabric = Fabric(accelerator="cpu", precision=flag)
    assert fabric.precision_plugin.precision == expected


def test_mixed_precision_by_name_autocasts_on_the_accelerators_device_type():
    plugin = Fabric(accelerator="cpu", precision="bf16-mixed").precision_plugin
    assert isinstance(plugin, MixedPrecision)
    assert plugin.device == "cpu"
    assert Fabric(accelerator="cpu", precision="16-mixed").precision_plugin.scaler is not None


def test_precision_instance_through_plugins_or_flag():
    plugin = DoublePrecision()
    assert Fabric(accelerator="cpu", plugins=[plugin]).precision_plugin is plugin
    assert Fabric(accelerator="cpu", precision=plugin).precision_plugin is plugin


def test_precision_name_together_with_precision_plugin_is_an_error():
    with pytest.raises(ValueError, match="conflicts"):
        Fabric(accelerator="cpu", precision="bf16-mixed", plugins=DoublePrecision())


def test_two_precision_plugins_are_an_error():
    with pytest.raises(ValueError, match="two Precision"):
        Fabric(accelerator="cpu", plugins=[DoublePrecision(), Precision()])


def test_unknown_precision_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"Unknown precision '8-mixed'.*'bf16-mixed'"):
        Fabric(accelerator="cpu", precision="8-mixed")


def test_first_party_precision_not_installed_says_what_to_install():
    with pytest.raises(ValueError, match=r'pip install "fabric-core\[te\]"'):
        Fabric(accelerator="cpu", precision="transformer-engine")


def test_first_party_strategy_installed_but_disabled_says_how_to_enable_it(monkeypatch):
    from fabric_core.plugins import reset

    monkeypatch.setenv("FABRIC_DISABLE_PLUGINS", "fsdp")
    reset()
    try:
        with pytest.raises(
            ValueError,
            match=r"strategy 'fsdp' is provided by fabric-fsdp, which is installed but disabled by "
            r"FABRIC_DISABLE_PLUGINS=fsdp: take 'fsdp'",
        ):
            Fabric(accelerator="cpu", strategy="fsdp")
    finally:
        monkeypatch.delenv("FABRIC_DISABLE_PLUGINS")
        reset()


def test_first_party_strategy_not_installed_says_what_to_install(without_plugins):
    without_plugins("fsdp")
    with pytest.raises(
        ValueError, match=r"strategy 'fsdp' is provided by fabric-fsdp: pip install \"fabric-core\[fsdp\]\""
    ):
        Fabric(accelerator="cpu", strategy="fsdp")


def test_first_party_accelerator_not_installed_says_what_to_install(without_plugins):
    without_plugins("cuda")
    with pytest.raises(ValueError, match=r'pip install "fabric-core\[cuda\]"'):
        Fabric(accelerator="cuda")


def test_gpu_without_any_gpu_says_what_to_do():
    with pytest.raises(ValueError, match=r"accelerator='gpu'\) found no GPU.*fabric-core\[cuda\]"):
        Fabric(accelerator="gpu")


def test_unknown_strategy_suggests_the_close_name():
    with pytest.raises(ValueError, match=r"Unknown strategy 'ddpp'.*Did you mean 'ddp'"):
        Fabric(accelerator="cpu", strategy="ddpp")


def test_unavailable_accelerator_is_an_error_naming_it():
    with pytest.raises(ValueError, match="MPSAccelerator is not available"):
        Fabric(accelerator="mps")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"accelerator": 3}, TypeError, "accelerator=3"),
        ({"strategy": torch.nn.Linear(1, 1)}, TypeError, "strategy="),
        ({"devices": 1.5}, TypeError, "devices=1.5"),
        ({"devices": True}, TypeError, "devices=True"),
        ({"num_nodes": 0}, ValueError, "num_nodes=0"),
        ({"num_nodes": "2"}, ValueError, "num_nodes='2'"),
        ({"precision": 3.5}, TypeError, "precision=3.5"),
        ({"plugins": ["bf16-mixed"]}, TypeError, "not a plugin"),
        ({"loggers": [object()]}, TypeError, "Logger"),
    ],
)
def test_bad_flags_are_typed_errors_naming_the_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        Fabric(**kwargs)


def test_single_device_strategy_with_several_devices_is_an_error():
    with pytest.raises(ValueError, match="one process on one device"):
        Fabric(accelerator="cpu", strategy="single_device", devices=2)


def test_checkpoint_io_plugin_reaches_the_strategy():
    io = TorchCheckpointIO(fsync=False)
    assert Fabric(accelerator="cpu", plugins=io).strategy.checkpoint_io is io


def test_accelerator_instance_is_used_as_given():
    accelerator = CPUAccelerator()
    assert Fabric(accelerator=accelerator).accelerator is accelerator


def test_auto_picks_the_available_accelerator_with_the_highest_priority(monkeypatch):
    from fabric_core.plugins import get_registries

    class FakeGPU(Accelerator):
        device_type = "cpu"  # computes on the CPU so the test runs anywhere
        priority = 100
        is_gpu = True

        @staticmethod
        def is_available():
            return True

        @staticmethod
        def parse_devices(devices):
            return int(devices)

        @staticmethod
        def get_parallel_devices(devices):
            return [torch.device("cpu")] * devices

        @staticmethod
        def auto_device_count():
            return 1

    registry = get_registries().accelerators
    registry.register("fakegpu", FakeGPU)
    try:
        assert isinstance(Fabric().accelerator, FakeGPU)
        assert isinstance(Fabric(accelerator="gpu").accelerator, FakeGPU)
    finally:
        registry._entries.pop("fakegpu")


class TestFabricRunValues:
    """`fabric run` passes its flags through environment variables; code never loses silently."""

    @pytest.fixture(autouse=True)
    def _no_process_group(self, monkeypatch):
        # Under the CLI, Fabric() joins the process group at once: make that a no-op here.
        monkeypatch.setattr(DDPStrategy, "setup_environment", lambda self: None)
        monkeypatch.setattr(SingleDeviceStrategy, "setup_environment", lambda self: None)

    def test_cli_values_fill_flags_left_at_their_defaults(self, monkeypatch):
        monkeypatch.setenv("FABRIC_CLI_USED", "1")
        monkeypatch.setenv("FABRIC_ACCELERATOR", "cpu")
        monkeypatch.setenv("FABRIC_PRECISION", "bf16-mixed")
        monkeypatch.setenv("FABRIC_DEVICES", "2")
        monkeypatch.setenv("LOCAL_RANK", "0")
        fabric = Fabric()
        assert fabric.precision_plugin.precision == "bf16-mixed"
        assert isinstance(fabric.strategy, DDPStrategy)

    def test_the_same_value_in_code_and_cli_is_fine(self, monkeypatch):
        monkeypatch.setenv("FABRIC_CLI_USED", "1")
        monkeypatch.setenv("FABRIC_PRECISION", "bf16-mixed")
        assert Fabric(accelerator="cpu", precision="bf16-mixed").precision_plugin.precision == "bf16-mixed"

    def test_a_conflicting_value_in_code_is_an_error_naming_both(self, monkeypatch):
        monkeypatch.setenv("FABRIC_CLI_USED", "1")
        monkeypatch.setenv("FABRIC_PRECISION", "bf16-mixed")
        with pytest.raises(ValueError, match=r"precision='64-true'.*--precision bf16-mixed"):
            Fabric(accelerator="cpu", precision="64-true")

    def test_launch_under_the_cli_is_an_error(self, monkeypatch):
        monkeypatch.setenv("FABRIC_CLI_USED", "1")
        fabric = Fabric(accelerator="cpu")
        with pytest.raises(RuntimeError, match="fabric run"):
            fabric.launch()

    def test_overriding_run_under_the_cli_is_an_error(self, monkeypatch):
        monkeypatch.setenv("FABRIC_CLI_USED", "1")

        class MyFabric(Fabric):
            def run(self):
                pass

        with pytest.raises(TypeError, match=r"overrides Fabric\.run"):
            MyFabric(accelerator="cpu")
