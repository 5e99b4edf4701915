"""The quick-start example, examples/digits.py, trains to a useful accuracy alone and under ``fabric run``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="the example's dataset ships with scikit-learn")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits.py"
# Below pytest's own per-test timeout, so a hang fails here with the output so far.
TIMEOUT_S = 240
ACCURACY = re.compile(r"test accuracy: ([0-9.]+)")


def run_example(*command: str) -> str:
    """Run ``command`` from the repository root; return its output after checking it exited 0."""
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(command)} did not finish in {TIMEOUT_S} s. Output:\n{err.stdout}{err.stderr}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited with {result.returncode}:\n{output}"
    return output


def accuracy_in(output: str) -> float:
    found = ACCURACY.findall(output)
    assert len(found) == 1, f"expected one 'test accuracy: ...' line (printed by rank 0 only), got:\n{output}"
    return float(found[0])


def test_example_reaches_90_percent_in_one_process():
    output = run_example(sys.executable, str(EXAMPLE))
    assert accuracy_in(output) >= 0.9, output


@pytest.mark.slow
def test_example_reaches_90_percent_in_two_processes_under_fabric_run():
    output = run_example(
        sys.executable, "-m", "fabric_core", "run", "--accelerator", "cpu", "--devices", "2", str(EXAMPLE)
    )
    assert accuracy_in(output) >= 0.9, output
    assert "world size 2" in output, output


def test_example_saves_a_checkpoint_with_model_optimizer_and_epoch(tmp_path):
    checkpoint = tmp_path / "digits.ckpt"
    run_example(sys.executable, str(EXAMPLE), "--epochs", "1", "--save", str(checkpoint))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "epoch"} <= set(state), sorted(state)
    assert state["epoch"] == 1
