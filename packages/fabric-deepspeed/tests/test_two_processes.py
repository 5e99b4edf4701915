"""Two CPU processes over gloo: every ZeRO stage against DDP, exact resume, zero.Init, checkpoints, bf16, errors.

Each script runs once per module in fresh processes started by Fabric (every configuration runs in the
same two processes, one Fabric after another); the tests read what it printed.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import torch

from fabric_core.cli import main as fabric_command

PARITY = ["stage 1", "stage 2", "stage 3", "stage 2 offload"]


@pytest.fixture(scope="module")
def parity(run_script) -> subprocess.CompletedProcess:
    return run_script("parity.py")


@pytest.fixture(scope="module")
def resumed(run_script, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    directory = tmp_path_factory.mktemp("resume")
    saved = run_script("resume.py", "save", str(directory))
    assert saved.returncode == 0, saved.stdout + saved.stderr[-6000:]
    return run_script("resume.py", "load", str(directory))


@pytest.fixture(scope="module")
def features(run_script, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    directory = tmp_path_factory.mktemp("features")
    return run_script("features.py", str(directory)), directory


def test_parity_script_exits_zero(parity):
    assert parity.returncode == 0, parity.stdout + parity.stderr[-6000:]


@pytest.mark.parametrize("configuration", PARITY)
def test_training_matches_ddp_within_1e_4_after_several_adamw_steps(parity, passed, configuration):
    passed(parity, configuration)
    differences = re.findall(rf"{re.escape(configuration)} ok: worst parameter difference ([0-9.e+-]+)", parity.stdout)
    assert len(differences) == 2 and all(float(d) <= 1e-4 for d in differences)


@pytest.mark.parametrize("strategy", ["deepspeed_stage_2", "deepspeed_stage_3"])
def test_save_then_load_in_a_fresh_launch_continues_exactly(resumed, passed, strategy):
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-6000:]
    passed(resumed, f"resume {strategy}")


def test_features_script_exits_zero(features):
    result, _ = features
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]


@pytest.mark.parametrize(
    "check",
    [
        "zero.Init partitions",
        "save after zero.Init",
        "load_full_weights",
        "full weights refuse the optimizer",
        "bf16-mixed",
        "two models with backward(model=...)",
        "backward without model=",
        "clip_gradients",
        "no_backward_sync",
        "setup_optimizers alone",
        "setup_module without an optimizer",
    ],
)
def test_feature(features, passed, check):
    result, _ = features
    passed(result, check)


def test_fabric_consolidate_writes_the_gathered_fp32_weights_and_the_extra_keys(features, capsys):
    _, directory = features
    output = directory / "consolidated.pt"
    assert fabric_command(["consolidate", str(directory / "stage3"), "--output", str(output)]) == 0
    assert "format deepspeed" in capsys.readouterr().out
    consolidated = torch.load(output)
    expected = torch.load(directory / "stage3.expected.pt")
    assert sorted(consolidated) == ["model", "note", "step"]
    assert consolidated["step"] == 2 and consolidated["note"] == "kept"
    assert consolidated["model"].keys() == expected.keys()
    for key, value in expected.items():
        assert consolidated["model"][key].dtype == torch.float32
        assert torch.equal(consolidated["model"][key], value), key


def test_the_checkpoint_stays_readable_by_deepspeeds_own_zero_to_fp32(features):
    _, directory = features
    script = directory / "stage3" / "zero_to_fp32.py"  # DeepSpeed copies its tool into every checkpoint
    spec = importlib.util.spec_from_file_location("zero_to_fp32_of_checkpoint", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    weights = tool.get_fp32_state_dict_from_zero_checkpoint(str(directory / "stage3"))
    expected = torch.load(directory / "stage3.expected.pt")
    assert all(torch.equal(weights[key], value) for key, value in expected.items())
