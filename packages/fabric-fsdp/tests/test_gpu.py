"""On CUDA GPUs (skipped without them): the same checks as on the CPU, over NCCL, plus figures.

Run them where GPUs exist with ``pytest packages/fabric-fsdp/tests -m gpu -s`` (the figures print).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu

CUDA = {"FABRIC_FSDP_TEST_ACCELERATOR": "cuda"}


def _gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


needs_one = pytest.mark.skipif(_gpus() < 1, reason="needs a CUDA GPU")
needs_two = pytest.mark.skipif(_gpus() < 2, reason="needs two CUDA GPUs")


@needs_one
def test_bf16_mixed_training_from_the_meta_device_checkpoints_and_cpu_offload_on_one_gpu(run_script, tmp_path):
    result = run_script("gpu_one.py", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    print(result.stdout.strip())
    assert "gpu ok" in result.stdout


@needs_two
def test_every_sharding_strategy_matches_ddp_on_two_gpus(run_script):
    result = run_script("parity.py", env=CUDA)
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    assert result.stdout.count(" ok: worst parameter difference") == 12


@needs_two
def test_checkpoints_precisions_and_features_on_two_gpus(run_script, tmp_path):
    result = run_script("features.py", str(tmp_path), env=CUDA)
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    loaded = run_script("load_one.py", str(tmp_path), env=CUDA)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr[-6000:]
