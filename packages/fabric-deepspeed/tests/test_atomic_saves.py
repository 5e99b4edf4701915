"""DeepSpeed saves commit atomically: a crash at any step leaves the previous checkpoint or the new one, whole.

The crash tests run ``scripts/crash_save.py``: per step, one two-process launch saves step 1, then saves step
2 and ends itself (``os._exit``) right after that step (``fabric_core.io.faults.checkpoint_step``); then one
fresh launch loads every crash's checkpoint (all of step 1 or all of step 2, never a mix), saves step 3 over
it, lists what is left and loads it again with ``verify=True``. The flow itself is checked in one process
with a stand-in engine first.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fabric_core.cli import main as fabric_command
from fabric_core.io import faults, integrity, leftovers
from fabric_deepspeed import checkpoint
from fabric_deepspeed.consolidator import DeepSpeedConsolidator

# -- the flow, with a stand-in engine in one process ---------------------------------------------------


class Engine:
    """Writes what DeepSpeed's ``save_checkpoint`` writes, in miniature; ``fail`` is raised instead."""

    optimizer = None

    def __init__(self, value: str = "new", fail: BaseException | None = None) -> None:
        self.value, self.fail, self.saved_into = value, fail, None

    def save_checkpoint(self, save_dir: str, client_state: dict, tag: str, exclude_frozen_parameters: bool) -> None:
        self.saved_into = Path(save_dir)
        if self.fail is not None:
            raise self.fail
        (self.saved_into / tag).mkdir()
        (self.saved_into / tag / "mp_rank_00_model_states.pt").write_text(f"{self.value} {client_state['step']}")
        (self.saved_into / "latest").write_text(tag)


class DecoupledEngine(Engine):
    """Writes its files only when DeepSpeed's decoupled writer is waited for."""

    def __init__(self) -> None:
        super().__init__()
        self.checkpoint_engine = SimpleNamespace(is_decoupled=lambda: True)
        self._pending: tuple[Any, ...] | None = None

    def save_checkpoint(self, save_dir: str, client_state: dict, tag: str, exclude_frozen_parameters: bool) -> None:
        self._pending = (save_dir, client_state, tag, exclude_frozen_parameters)

    def _commit_decoupled_checkpoint(self) -> None:
        Engine.save_checkpoint(self, *self._pending)


class Strategy:
    """The one-process strategy ``checkpoint.save`` and ``checkpoint_to_read`` talk to."""

    is_global_zero, world_size, exclude_frozen_parameters = True, 1, False

    def __init__(self, engine: Engine) -> None:
        self._engines = [engine]

    def broadcast(self, obj: Any) -> Any:
        return obj

    def barrier(self, name: str | None = None) -> None:
        pass

    def convert_state(self, state: dict[str, Any]) -> dict[str, Any]:
        return dict(state)


def _save(path: Path, engine: Engine, step: int = 1) -> None:
    checkpoint.save(Strategy(engine), path, {"model": engine, "step": step}, None, None)


def test_a_save_is_written_beside_the_path_and_committed_with_a_manifest_of_every_file(tmp_path, monkeypatch):
    steps: list[str] = []
    monkeypatch.setattr(faults, "checkpoint_step", steps.append)
    engine = Engine()
    _save(tmp_path / "ckpt", engine)
    assert leftovers.owner_of(engine.saved_into, tmp_path / "ckpt")[0] == "partial"
    manifest = integrity.read_manifest(tmp_path / "ckpt")
    assert sorted(manifest["files"]) == ["checkpoint/mp_rank_00_model_states.pt", "latest"]
    assert manifest["world_size"] == 1 and integrity.verify_checkpoint(tmp_path / "ckpt") == []
    assert os.listdir(tmp_path) == ["ckpt"]
    assert steps == [f"deepspeed-{s}" for s in ("staging-created", "written", "manifest-written", "renamed")]


def test_a_save_that_fails_in_deepspeed_is_explained_and_keeps_the_previous_checkpoint(tmp_path):
    _save(tmp_path / "ckpt", Engine("old"))
    with pytest.raises(OSError, match=r"Cannot save checkpoint '.*ckpt': no space left") as caught:
        _save(tmp_path / "ckpt", Engine(fail=OSError(errno.ENOSPC, "No space left on device")), step=2)
    assert caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["ckpt"]
    assert (tmp_path / "ckpt" / "checkpoint" / "mp_rank_00_model_states.pt").read_text() == "old 1"


def test_a_decoupled_deepspeed_writer_is_waited_for_before_the_manifest(tmp_path):
    _save(tmp_path / "ckpt", DecoupledEngine())
    assert "latest" in integrity.read_manifest(tmp_path / "ckpt")["files"]


def test_the_consolidator_recognizes_a_committed_folder(tmp_path):
    _save(tmp_path / "ckpt", Engine())
    assert DeepSpeedConsolidator().recognizes(tmp_path / "ckpt")


def test_a_load_of_a_missing_path_with_nothing_beside_it_says_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Checkpoint not found: '.*ckpt'"):
        checkpoint.checkpoint_to_read(Strategy(Engine()), tmp_path / "ckpt")


def test_a_load_of_a_folder_deepspeed_wrote_itself_reads_it_as_it_is(tmp_path):
    (tmp_path / "ckpt" / "global_step10").mkdir(parents=True)
    (tmp_path / "ckpt" / "latest").write_text("global_step10")
    assert checkpoint.checkpoint_to_read(Strategy(Engine()), tmp_path / "ckpt") == tmp_path / "ckpt"


# -- two processes, killed after each step -------------------------------------------------------------

CRASH_EXIT = 17
#: Each step of a DeepSpeed save (committed by an atomic exchange, or by two renames where the system has no
#: exchange), and the step a load sees after a crash right after it.
STEPS = [
    ("exchange", "deepspeed-staging-created", 1),
    ("exchange", "deepspeed-written", 1),
    ("exchange", "deepspeed-manifest-written", 2),  # the commit record is written: the new checkpoint is complete
    ("exchange", "deepspeed-exchanged", 2),
    ("exchange", "deepspeed-previous-removed", 2),
    ("two-renames", "deepspeed-previous-kept", 2),  # nothing at the path, two complete folders beside it
    ("two-renames", "deepspeed-renamed", 2),
]
#: After these, the checkpoint path does not hold the newest complete checkpoint: the load says what it read.
LOADED_FROM_BESIDE = {"deepspeed-manifest-written", "deepspeed-previous-kept"}


@pytest.fixture(scope="module")
def crashes(run_script, tmp_path_factory) -> tuple[dict, subprocess.CompletedProcess]:
    """Every step's crash launch (its folder and result), and the one launch that resumed from all of them."""
    runs = {}
    for how, step, _ in STEPS:
        out = tmp_path_factory.mktemp(f"{how}-{step}")
        runs[(how, step)] = out, run_script("crash_save.py", "crash", str(out), step, how)
    resumed = run_script("crash_save.py", "resume", *(str(out) for out, _ in runs.values()))
    return runs, resumed


@pytest.mark.parametrize(("how", "step", "expected"), STEPS)
def test_a_two_process_save_killed_after_any_step_loads_old_or_new_whole_and_the_next_save_cleans_up(
    crashes, how, step, expected
):
    runs, resumed = crashes
    out, crashed = runs[(how, step)]
    assert crashed.returncode == CRASH_EXIT, f"not ended at {step}:\n{crashed.stdout}{crashed.stderr[-4000:]}"
    lines = [line.removeprefix(f"{out}: ") for line in resumed.stdout.splitlines() if line.startswith(f"{out}: ")]
    output = "\n".join(lines) + "\n" + resumed.stderr[-4000:]
    assert f"loaded step {expected}" in lines, output
    warnings = [line for line in lines if line.startswith("warning")]
    if step in LOADED_FROM_BESIDE:
        assert len(warnings) == 1 and f"{out}/.ckpt.partial." in warnings[0], output
        assert warnings[0].startswith("warning (crash_save.py)"), output  # it points at the user's fabric.load
    else:
        assert not warnings, output
    assert "entries: ['ckpt']" in lines and "reloaded step 3" in lines, output


def test_load_with_verify_refuses_a_flipped_byte_on_every_rank(crashes, passed):
    _, resumed = crashes
    passed(resumed, "verify refuses a flipped byte")


def test_a_save_error_is_explained_and_raised_on_every_rank(crashes, passed):
    _, resumed = crashes
    passed(resumed, "a save error is raised on every rank")


def test_fabric_checkpoint_verify_passes_a_deepspeed_checkpoint_and_names_a_flipped_byte(crashes, tmp_path, capsys):
    runs, _ = crashes
    out, _ = runs[("exchange", "deepspeed-previous-removed")]
    copy = shutil.copytree(out / "ckpt", tmp_path / "ckpt")
    manifest = json.loads((copy / integrity.MANIFEST_NAME).read_text())
    assert manifest["world_size"] == 2 and "latest" in manifest["files"] and "zero_to_fp32.py" in manifest["files"]
    assert fabric_command(["checkpoint", "verify", str(copy)]) == 0
    capsys.readouterr()
    target = copy / "checkpoint" / "zero_pp_rank_0_mp_rank_00_model_states.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    assert fabric_command(["checkpoint", "verify", str(copy)]) == 1
    assert f"'{target}' fails its CRC-32 check" in capsys.readouterr().out
