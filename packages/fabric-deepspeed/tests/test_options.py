"""DeepSpeedStrategy's arguments and config: what Fabric(...) builds; bad input refused before any process starts."""

from __future__ import annotations

import json
import os

import pytest
import torch

from fabric_core import Fabric
from fabric_deepspeed import DeepSpeedPrecision, DeepSpeedStrategy
from fabric_deepspeed import config as ds_config


def resolved(strategy, **kwargs) -> DeepSpeedStrategy:
    """The strategy as Fabric(...) resolves it for two CPU processes (no process is started)."""
    return Fabric(accelerator="cpu", devices=2, strategy=strategy, **kwargs).strategy


def test_the_arguments_build_lightnings_config_with_the_precision_section():
    offloading = DeepSpeedStrategy(stage=3, offload_optimizer=True, offload_parameters=True)
    strategy = resolved(offloading, precision="bf16-mixed")
    config = strategy.config
    assert config["zero_optimization"]["stage"] == 3
    assert config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert config["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert config["bf16"] == {"enabled": True}
    assert config["train_micro_batch_size_per_gpu"] == 1
    assert config["zero_force_ds_cpu_optimizer"] is False  # the user's torch optimizer, no C++ build
    assert isinstance(strategy.precision, DeepSpeedPrecision) and strategy.precision.precision == "bf16-mixed"


@pytest.mark.parametrize(
    ("name", "stage", "offload_optimizer", "offload_param"),
    [
        ("deepspeed", 2, False, False),
        ("deepspeed_stage_1", 1, False, False),
        ("deepspeed_stage_2", 2, False, False),
        ("deepspeed_stage_2_offload", 2, True, False),
        ("deepspeed_stage_3", 3, False, False),
        ("deepspeed_stage_3_offload", 3, True, True),
        ("deepspeed_stage_3_offload_nvme", 3, True, True),
    ],
)
def test_registered_names_mean_what_they_do_in_lightning(name, stage, offload_optimizer, offload_param):
    zero = resolved(name).config["zero_optimization"]
    assert zero["stage"] == stage
    assert ("offload_optimizer" in zero) == offload_optimizer
    assert ("offload_param" in zero) == offload_param
    if name.endswith("nvme"):
        assert zero["offload_param"]["device"] == zero["offload_optimizer"]["device"] == "nvme"


def test_an_explicit_config_wins_over_the_arguments(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}, "gradient_clipping": 0.5}))
    strategy = resolved(DeepSpeedStrategy(stage=3, offload_optimizer=True, config=str(path)))
    assert strategy.config["zero_optimization"] == {"stage": 1}
    assert strategy.config["gradient_clipping"] == 0.5
    assert strategy.zero_stage == 1


def test_a_precision_section_of_the_config_wins_over_the_flag():
    config = {"zero_optimization": {"stage": 2}, "bf16": {"enabled": False}}
    assert resolved(DeepSpeedStrategy(config=config), precision="bf16-mixed").config["bf16"] == {"enabled": False}


def test_the_config_dict_is_copied_not_modified():
    config = {"zero_optimization": {"stage": 2}}
    resolved(DeepSpeedStrategy(config=config), precision="bf16-mixed")
    assert config == {"zero_optimization": {"stage": 2}}


@pytest.mark.parametrize("stage", [4, -1, "3", True])
def test_a_stage_that_does_not_exist_is_refused(stage):
    with pytest.raises(ValueError, match=r"is not a ZeRO stage: expected 0 \(off\), 1"):
        DeepSpeedStrategy(stage=stage)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"stage": 1, "offload_optimizer": True}, "offloading the optimizer is supported from ZeRO stage 2 on"),
        ({"stage": 1, "offload_parameters": True}, "offloading parameters needs ZeRO stage 3"),
        ({"stage": 2, "offload_parameters": True}, "offloading parameters needs ZeRO stage 3"),
    ],
)
def test_an_offload_option_the_stage_cannot_honour_is_refused(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        DeepSpeedStrategy(**kwargs)


def test_an_offload_device_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match=r"offload_optimizer_device='gpu'\) must be one of \('cpu', 'nvme'\)"):
        DeepSpeedStrategy(stage=2, offload_optimizer=True, offload_optimizer_device="gpu")


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ds\.json'\): the DeepSpeed config file does not exist"):
        DeepSpeedStrategy(config=str(tmp_path / "ds.json"))


def test_invalid_json_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text('{\n  "zero_optimization": {"stage": 2},\n  "fp16": {"enabled": true,}\n}\n')
    with pytest.raises(ValueError, match=r"ds\.json'\): the file is not valid JSON: .* at line 3"):
        DeepSpeedStrategy(config=path)


def test_a_json_file_that_is_not_an_object_is_refused(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds a JSON list, not an object of settings"):
        DeepSpeedStrategy(config=path)


def test_an_unknown_top_level_key_is_refused_with_the_closest_one():
    expected = r"unknown DeepSpeed config key 'gradient_cliping' \(did you mean 'gradient_clipping'\?\)"
    with pytest.raises(ValueError, match=expected):
        DeepSpeedStrategy(config={"gradient_cliping": 1.0})


def test_an_unknown_zero_key_is_refused_with_the_closest_one():
    with pytest.raises(ValueError, match=r"unknown key 'stag' in 'zero_optimization' \(did you mean 'stage'\?\)"):
        DeepSpeedStrategy(config={"zero_optimization": {"stag": 3}})


def test_a_config_of_the_wrong_type_is_refused():
    with pytest.raises(TypeError, match="must be a dict or the path of a JSON file, not int"):
        DeepSpeedStrategy(config=3)


def test_the_known_keys_cover_every_field_of_deepspeeds_zero_config():
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    fields = DeepSpeedZeroConfig.model_fields
    names = set(fields) | {field.alias for field in fields.values() if field.alias}
    assert names <= ds_config.ZERO_KEYS, sorted(names - ds_config.ZERO_KEYS)


def test_a_missing_deepspeed_gives_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r'pip install "fabric-core\[deepspeed\]"'):
        DeepSpeedStrategy()


def test_a_precision_deepspeed_does_not_run_is_refused_at_fabric():
    with pytest.raises(ValueError, match="DeepSpeed does not run precision='64-true'"):
        resolved("deepspeed", precision="64-true")


@pytest.mark.skipif(
    bool(torch.ops.mkldnn._is_mkldnn_fp16_supported()), reason="this CPU runs DeepSpeed's float16 engine"
)
@pytest.mark.parametrize("precision", ["16-mixed", "16-true"])
def test_float16_on_a_cpu_without_onednn_float16_is_refused_with_the_reason(precision):
    with pytest.raises(ValueError, match=rf"precision='{precision}' cannot run under DeepSpeed on this CPU"):
        resolved("deepspeed", precision=precision)


def test_a_conflicting_ds_accelerator_variable_is_refused(monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cuda")
    with pytest.raises(ValueError, match="DS_ACCELERATOR='cuda', but Fabric runs DeepSpeed on 'cpu'"):
        resolved("deepspeed")


def test_setup_before_launch_says_to_launch():
    fabric = Fabric(accelerator="cpu", devices=2, strategy="deepspeed")
    with pytest.raises(RuntimeError, match=r"fabric.launch\(\)"):
        fabric.setup(torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))


def test_the_strategy_is_inspectable():
    strategy = resolved("deepspeed_stage_3")
    assert repr(strategy).startswith("DeepSpeedStrategy(stage=3, backend='gloo', num_processes=2")
    assert strategy.zero_stage_3 and strategy.model is None
    assert os.environ.get("DS_ACCELERATOR") is None  # resolving sets nothing in the environment
