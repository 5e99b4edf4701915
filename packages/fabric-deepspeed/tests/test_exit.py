"""A DeepSpeed run ends cleanly: exit 0 after the last step, and a dead rank ends it non-zero within seconds."""

from __future__ import annotations

import time


def test_a_stage_3_run_exits_zero_after_its_last_step(run_script, passed):
    result = run_script("train.py")
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    passed(result, "trained")
    assert "Aborted" not in result.stderr and "terminate called" not in result.stderr


def test_a_killed_rank_ends_the_run_with_a_non_zero_exit(run_script):
    started = time.monotonic()
    result = run_script("train.py", "--die")
    elapsed = time.monotonic() - started
    assert result.returncode == 137, result.stdout + result.stderr[-6000:]  # 128 + SIGKILL, as with DDP
    assert "local rank 1 (global rank 1" in result.stderr and "exited with code -9" in result.stderr
    assert "rank 0 trained ok" not in result.stdout
    assert elapsed < 120
