"""Two CPU processes over gloo: FSDP and model_parallel against DDP, checkpoints, precisions, features.

Each script runs once per module (its checks print one line per rank) in fresh processes started by
Fabric, bounded in time; the tests below read what they printed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

PARITY_CONFIGURATIONS = [
    "FULL_SHARD",
    "SHARD_GRAD_OP",
    "NO_SHARD",
    "HYBRID_SHARD(1,2)",
    "HYBRID_SHARD(2,1)",
    "model_parallel(1x2)",
]
FEATURE_CHECKS = [
    "sharded round trip",
    "full round trip",
    "full file into a sharded-checkpoint strategy",
    "strict and load without state",
    "optimizer saved before its first step",
    "plain checkpoint into sharded models",
    "bf16-mixed master weights",
    "16-mixed master weights",
    "bf16-true",
    "init_module(empty_init=True)",
    "fsdp_cpu_offload",
    "activation checkpointing",
    "clip_gradients(clip_val)",
    "collectives",
]


def _passed(result: subprocess.CompletedProcess, check: str) -> None:
    output = result.stdout
    for rank in (0, 1):
        if f"rank {rank} {check} ok" not in output:
            pytest.fail(
                f"rank {rank} did not pass {check!r} (exit {result.returncode}):\n{output}\n{result.stderr[-6000:]}"
            )


@pytest.fixture(scope="module")
def parity(run_script) -> subprocess.CompletedProcess:
    return run_script("parity.py")


@pytest.fixture(scope="module")
def features(run_script, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("checkpoints")
    return run_script("features.py", str(out)), out


def test_parity_script_exits_zero(parity):
    assert parity.returncode == 0, parity.stdout + parity.stderr[-6000:]


@pytest.mark.parametrize("configuration", PARITY_CONFIGURATIONS)
def test_training_matches_ddp_within_1e_5_with_no_backward_sync_and_clipping(parity, configuration):
    _passed(parity, configuration)
    differences = re.findall(rf"{re.escape(configuration)} ok: worst parameter difference ([0-9.e+-]+)", parity.stdout)
    assert differences and all(float(d) <= 1e-5 for d in differences)


def test_setup_module_and_setup_optimizers_train_like_setup(parity):
    # Checked inside the FULL_SHARD configuration: both orders of optimizer creation, bit for bit.
    _passed(parity, "FULL_SHARD")


def test_features_script_exits_zero(features):
    result, _ = features
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]


@pytest.mark.parametrize("check", FEATURE_CHECKS)
def test_feature_on_two_processes(features, check):
    _passed(features[0], check)


def test_a_checkpoint_saved_by_two_processes_loads_into_one(features, run_script):
    result, out = features
    assert result.returncode == 0, result.stderr[-6000:]
    loaded = run_script("load_one.py", str(out))
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr[-6000:]
    assert "loaded sharded ok" in loaded.stdout and "loaded full.pt ok" in loaded.stdout


def test_consolidate_turns_the_sharded_checkpoint_into_the_full_one(features, tmp_path):
    from fabric_core.cli import main as fabric_main
    from fabric_core.testing.precision import assert_same_state

    result, out = features
    assert result.returncode == 0, result.stderr[-6000:]
    output = tmp_path / "consolidated.pt"
    assert fabric_main(["consolidate", str(out / "sharded"), "--output", str(output)]) == 0
    consolidated = torch.load(output)  # weights_only: plain tensors, numbers, strings and tuples
    expected = torch.load(out / "full.pt", weights_only=False)
    assert consolidated.keys() == expected.keys() == {"model", "optimizer", "step", "note"}
    assert_same_state(consolidated["model"], expected["model"], "model")
    assert_same_state(consolidated["optimizer"]["state"], expected["optimizer"]["state"], "optimizer state")
    assert consolidated["optimizer"]["param_groups"] == expected["optimizer"]["param_groups"]
    assert (consolidated["step"], consolidated["note"]) == (3, "kept in meta.pt")
