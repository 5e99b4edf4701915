"""Single-file saves killed at every step: the checkpoint stays loadable and the next save cleans up.

A subprocess saves over an existing checkpoint and ends itself (``os._exit``) right after one step of
``atomic_torch_save`` (``fabric_core.io.faults.checkpoint_step``). Then, in this process, ``fabric.load``
must give the old or the new checkpoint, complete, and the next save must leave nothing beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fabric_core import Fabric
from fabric_core.io import TorchCheckpointIO, leftovers, wait_for_checkpoint_flushes

CRASH_EXIT = 17
TIMEOUT = 180

_SAVE_AND_CRASH = textwrap.dedent(
    """
    import os, sys
    import torch
    from fabric_core import Fabric
    from fabric_core.io import TorchCheckpointIO, faults, wait_for_checkpoint_flushes

    path, step, background = sys.argv[1], sys.argv[2], sys.argv[3] == "background"
    faults.checkpoint_step = lambda name: os._exit({exit}) if name == step else None
    fabric = Fabric(accelerator="cpu", devices=1, plugins=[TorchCheckpointIO(fsync_in_background=background)])
    fabric.save(path, {{"weights": torch.full((50_000,), 2.0), "version": 2}})
    wait_for_checkpoint_flushes()  # the background flush runs its steps too
    os._exit(0)  # the step was never reached
    """
).format(exit=CRASH_EXIT)

# Every step of atomic_torch_save, for each way of flushing.
BACKGROUND_STEPS = [
    "tmp-created",
    "tmp-written",
    "previous-linked",
    "previous-kept",
    "renamed",
    "tmp-synced",
    "directory-synced",
    "previous-removed",
]
FOREGROUND_STEPS = ["tmp-created", "tmp-written", "tmp-synced", "renamed", "directory-synced"]


def _fabric(background: bool) -> Fabric:
    return Fabric(accelerator="cpu", devices=1, plugins=[TorchCheckpointIO(fsync_in_background=background)])


def _crash_during_save(tmp_path, step: str, background: bool):
    path = tmp_path / "model.ckpt"
    _fabric(background).save(path, {"weights": torch.full((50_000,), 1.0), "version": 1})
    wait_for_checkpoint_flushes()
    script = tmp_path / "save_and_crash.py"
    script.write_text(_SAVE_AND_CRASH)
    mode = "background" if background else "foreground"
    result = subprocess.run(
        [sys.executable, str(script), str(path), step, mode], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == CRASH_EXIT, f"the save never reached step {step!r}: {result.stderr}"
    return path


def _assert_complete_version(loaded: dict) -> int:
    version = loaded["version"]
    assert version in (1, 2)
    weights = loaded["weights"]
    assert weights.shape == (50_000,)
    assert weights.min().item() == weights.max().item() == float(version), "a mix of two versions"
    return version


@pytest.mark.parametrize(
    ("step", "background"),
    [(step, True) for step in BACKGROUND_STEPS] + [(step, False) for step in FOREGROUND_STEPS],
    ids=[f"background-{s}" for s in BACKGROUND_STEPS] + [f"foreground-{s}" for s in FOREGROUND_STEPS],
)
def test_a_save_killed_at_any_step_leaves_a_complete_checkpoint_and_the_next_save_cleans_up(tmp_path, step, background):
    path = _crash_during_save(tmp_path, step, background)
    fabric = _fabric(background)
    version = _assert_complete_version(fabric.load(path))
    # Before the rename the old version is at the path; after it, the new one.
    renamed = BACKGROUND_STEPS.index("renamed") if background else FOREGROUND_STEPS.index("renamed")
    steps = BACKGROUND_STEPS if background else FOREGROUND_STEPS
    assert version == (2 if steps.index(step) >= renamed else 1)

    fabric.save(path, {"weights": torch.full((50_000,), 3.0), "version": 3})
    wait_for_checkpoint_flushes()
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt", "save_and_crash.py"]
    assert fabric.load(path)["version"] == 3


def test_twenty_killed_saves_leave_at_most_one_temporary(tmp_path):
    path = tmp_path / "model.ckpt"
    for _ in range(20):
        _crash_during_save(tmp_path, "tmp-written", background=True)
    # Each save removed what the one killed before it left; only the last one's is still there.
    assert len([name for name in os.listdir(tmp_path) if name.startswith(".")]) == 1
    _fabric(True).save(path, {"version": 3})
    wait_for_checkpoint_flushes()
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt", "save_and_crash.py"]


def test_a_save_keeps_the_temporary_file_of_a_live_writer(tmp_path):
    path = tmp_path / "model.ckpt"
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = tmp_path / f".model.ckpt.tmp.{leftovers.host_id()}.{writer.pid}.0123abcd"
        live.write_bytes(b"a save in progress")
        _fabric(True).save(path, {"version": 1})
        wait_for_checkpoint_flushes()
        assert live.read_bytes() == b"a save in progress"
    finally:
        writer.kill()
        writer.wait(timeout=60)
    _fabric(True).save(path, {"version": 2})  # now its owner is gone
    wait_for_checkpoint_flushes()
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_a_save_removes_the_temporaries_older_versions_left(tmp_path):
    path = tmp_path / "model.ckpt"
    old_tmp = tmp_path / ".model.ckpt.k3j_9xqa.tmp"  # tempfile.mkstemp's name in earlier versions
    old_tmp.write_bytes(b"x" * 1000)
    stale = 1_000_000_000  # 2001: nobody is writing it
    os.utime(old_tmp, (stale, stale))
    _fabric(True).save(path, {"version": 1})
    wait_for_checkpoint_flushes()
    assert os.listdir(tmp_path) == ["model.ckpt"]
