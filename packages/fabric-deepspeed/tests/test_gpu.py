"""On CUDA GPUs (skipped without them): the CPU checks again, over NCCL with DeepSpeed's CUDA accelerator.

Run them where GPUs exist with ``pytest packages/fabric-deepspeed/tests -m gpu -s``.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def _gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


needs_one = pytest.mark.skipif(_gpus() < 1, reason="needs a CUDA GPU")
needs_two = pytest.mark.skipif(_gpus() < 2, reason="needs two CUDA GPUs")


@needs_one
def test_a_stage_3_run_on_one_gpu(run_script, passed):
    result = run_script(
        "train.py", env={"FABRIC_DEEPSPEED_TEST_ACCELERATOR": "cuda", "FABRIC_DEEPSPEED_TEST_DEVICES": "1"}
    )
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    assert "rank 0 trained ok" in result.stdout


@needs_two
def test_every_stage_matches_ddp_on_two_gpus(run_script):
    result = run_script("parity.py", env={"FABRIC_DEEPSPEED_TEST_ACCELERATOR": "cuda"})
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    assert result.stdout.count(" ok: worst parameter difference") == 8


@needs_two
def test_checkpoints_precisions_and_features_on_two_gpus(run_script, passed, tmp_path):
    result = run_script("features.py", str(tmp_path), env={"FABRIC_DEEPSPEED_TEST_ACCELERATOR": "cuda"})
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    passed(result, "zero.Init partitions")
    passed(result, "load_full_weights")
