"""A sharded save killed at each step of its commit leaves a complete checkpoint, and the next save cleans up.

Each test runs ``scripts/crash_save.py``: a save of step 1, then a save of step 2 whose process ends
(``os._exit``) right after one step (``fabric_core.io.faults.checkpoint_step``); then a fresh run loads the
checkpoint (all of step 1 or all of step 2, never a mix), saves step 3 and lists what is left.
"""

from __future__ import annotations

import pytest

#: Each step of a sharded save (committed by an atomic exchange, or by two renames where the system has no
#: exchange), and the step a load sees after a crash right after it.
STEPS = [
    ("exchange", "sharded-staging-created", 1),
    ("exchange", "sharded-shards-written", 1),
    ("exchange", "sharded-meta-written", 1),
    ("exchange", "sharded-manifest-written", 2),  # the commit record is written: the new checkpoint is complete
    ("exchange", "sharded-exchanged", 2),
    ("exchange", "sharded-previous-removed", 2),
    ("two-renames", "sharded-previous-kept", 2),  # nothing at the path, two complete folders beside it
    ("two-renames", "sharded-renamed", 2),
    ("two-renames", "sharded-previous-removed", 2),
]
#: After these, the checkpoint path does not hold the newest complete checkpoint: the load says what it read.
LOADED_FROM_BESIDE = {"sharded-manifest-written", "sharded-previous-kept"}


def _crash_and_resume(run_script, out, step: str, devices: int, how: str):
    crashed = run_script("crash_save.py", str(out), "crash", step, str(devices), how)
    assert crashed.returncode == 17, f"the save did not end at {step}:\n{crashed.stdout}\n{crashed.stderr[-4000:]}"
    resumed = run_script("crash_save.py", str(out), "resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-4000:]
    return resumed.stdout


@pytest.mark.parametrize(("how", "step", "expected"), STEPS)
def test_a_save_killed_after_any_step_loads_old_or_new_whole_and_the_next_save_leaves_no_leftovers(
    run_script, tmp_path, how, step, expected
):
    output = _crash_and_resume(run_script, tmp_path, step, devices=1, how=how)
    assert f"loaded step {expected}\n" in output, output
    warnings = [line for line in output.splitlines() if line.startswith("warning:")]
    if step in LOADED_FROM_BESIDE:
        assert len(warnings) == 1 and f"{tmp_path}/.ckpt.partial." in warnings[0], output
    else:
        assert not warnings, output
    assert "entries: ['ckpt']\n" in output and "reloaded step 3\n" in output, output


TWO_PROCESS_STEPS = [("exchange", "sharded-shards-written", 1), ("two-renames", "sharded-previous-kept", 2)]


@pytest.mark.parametrize(("how", "step", "expected"), TWO_PROCESS_STEPS)
def test_a_two_process_save_killed_mid_commit_loads_into_one_process(run_script, tmp_path, how, step, expected):
    output = _crash_and_resume(run_script, tmp_path, step, devices=2, how=how)
    assert f"loaded step {expected}\n" in output, output
    assert "entries: ['ckpt']\n" in output and "reloaded step 3\n" in output, output
