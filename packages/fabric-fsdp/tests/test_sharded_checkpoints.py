"""Sharded checkpoints in one process: the manifest, leftovers of interrupted saves, and clear errors."""

from __future__ import annotations

import errno
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fabric_core import Fabric
from fabric_core.io import integrity, leftovers
from fabric_core.io.integrity import CheckpointCorruptError


def _model(fabric: Fabric, out_features: int = 2, value: float | None = None):
    torch.manual_seed(0)
    model = nn.Linear(4, out_features)
    if value is not None:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(value)
    return fabric.setup_module(model)


@pytest.fixture
def saved(fabric: Fabric, tmp_path: Path) -> Path:
    """A sharded checkpoint of one process at tmp_path/ckpt: a Linear(4, 2) and step 1."""
    fabric.save(tmp_path / "ckpt", {"model": _model(fabric), "step": 1})
    return tmp_path / "ckpt"


def _single_line_error(err: BaseException, path: Path) -> str:
    """The message, checked to name the checkpoint and to carry no traceback dump of any rank."""
    message = str(err)
    assert str(path) in message, message
    assert "Traceback" not in message and "CheckpointException" not in message, message
    chained = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    assert chained is None, f"the raw error is chained to the explained one: {chained!r}"
    return message


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _named(path: Path, kind: str, pid: int, host: str | None = None) -> Path:
    return path.with_name(f".{path.name}.{kind}.{host or leftovers.host_id()}.{pid}.0badc0de")


# -- the manifest --------------------------------------------------------------------------------------


def test_a_sharded_save_writes_a_manifest_of_every_file_with_size_and_crc32(saved):
    manifest = json.loads((saved / integrity.MANIFEST_NAME).read_text())
    files = sorted(p.name for p in saved.iterdir() if p.name != integrity.MANIFEST_NAME)
    assert sorted(manifest["files"]) == files == [".metadata", "__0_0.distcp", "meta.pt"]
    for name, entry in manifest["files"].items():
        assert entry == integrity.checksum_file(saved / name), name
    assert manifest["world_size"] == 1 and isinstance(manifest["saved_at"], float)
    assert integrity.verify_checkpoint(saved) == []


def test_a_flipped_byte_in_a_shard_is_found_by_verify(saved):
    shard = saved / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = integrity.verify_checkpoint(saved)
    assert len(problems) == 1 and "__0_0.distcp" in problems[0] and "CRC-32" in problems[0]


# -- interrupted saves: what a load finds, what the next save cleans -----------------------------------


def test_a_copy_of_another_host_is_not_loaded_but_named_with_the_command_that_restores_it(fabric, saved):
    copy = _named(saved, "partial", 12345, host="other-node")
    saved.rename(copy)
    with pytest.raises(FileNotFoundError) as caught:
        fabric.load(saved, {"model": _model(fabric)})
    message = str(caught.value)
    assert f"Checkpoint not found: '{saved}'" in message and f"'{copy}'" in message, message
    assert f"mv {shlex.quote(str(copy))} {shlex.quote(str(saved))}" in message, message


def test_folders_an_older_version_left_between_its_renames_are_named_not_guessed(fabric, saved):
    old_previous = saved.with_name(".ckpt.fabric-previous")
    saved.rename(old_previous)
    with pytest.raises(FileNotFoundError, match=r"older fabric-fsdp.*\n.*mv .*\.ckpt\.fabric-previous"):
        fabric.load(saved, {"model": _model(fabric)})


def test_a_save_that_never_completed_is_reported_and_not_loaded(fabric, tmp_path):
    incomplete = _named(tmp_path / "ckpt", "partial", _dead_pid())
    incomplete.mkdir()
    (incomplete / "__0_0.distcp").write_bytes(b"half")
    with pytest.raises(FileNotFoundError, match=r"only incomplete folders beside it .*\.ckpt\.partial\..*no manifest"):
        fabric.load(tmp_path / "ckpt", {"model": _model(fabric)})
    fabric.save(tmp_path / "ckpt", {"model": _model(fabric), "step": 2})
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_the_next_save_removes_folders_of_dead_saves_but_never_those_of_a_running_one(fabric, saved):
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _named(saved, "partial", running.pid)
        dead = _named(saved, "previous", _dead_pid())
        elsewhere = _named(saved, "partial", _dead_pid(), host="other-node")
        for folder in (live, dead, elsewhere):
            folder.mkdir()
            (folder / "__0_0.distcp").write_bytes(b"x")
        fabric.save(saved, {"model": _model(fabric), "step": 2})
        assert sorted(p.name for p in saved.parent.iterdir()) == sorted(["ckpt", live.name, elsewhere.name])
    finally:
        running.kill()
        running.wait()


def test_a_complete_newer_copy_of_a_dead_save_is_loaded_with_a_warning_and_then_put_in_place(fabric, saved):
    fabric.save(saved.with_name("newer"), {"model": _model(fabric, value=2.0), "step": 2})
    newer = _named(saved, "partial", _dead_pid())
    saved.with_name("newer").rename(newer)  # as if killed right after writing its manifest
    state = {"model": _model(fabric), "step": 0}
    with pytest.warns(UserWarning, match=r"later save was interrupted .* loading that one"):
        fabric.load(saved, state)
    assert state["step"] == 2
    fabric.save(saved, {"model": _model(fabric), "step": 3})
    assert sorted(os.listdir(saved.parent)) == ["ckpt"]


# -- save errors ---------------------------------------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """Every shard file DCP opens for writing fails with ENOSPC, as on a full disk."""
    from torch.distributed.checkpoint.filesystem import FileSystem

    real = FileSystem.create_stream

    def create_stream(self, path, mode):
        if "w" in mode and str(path).endswith(".distcp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(self, path, mode)

    monkeypatch.setattr(FileSystem, "create_stream", create_stream)


def test_a_full_disk_is_one_error_naming_the_checkpoint_and_the_partial_folder_is_removed(fabric, saved, full_disk):
    with pytest.raises(OSError) as caught:
        fabric.save(saved, {"model": _model(fabric), "step": 2})
    assert caught.value.errno == errno.ENOSPC
    message = _single_line_error(caught.value, saved)
    assert "no space left" in message and ".partial." not in message, message
    assert len(message.splitlines()) == 1, message
    assert sorted(os.listdir(saved.parent)) == ["ckpt"]


def test_a_save_under_a_file_says_that_the_file_is_in_the_way(fabric, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(NotADirectoryError) as caught:
        fabric.save(tmp_path / "runs" / "ckpt", {"model": _model(fabric)})
    message = _single_line_error(caught.value, tmp_path / "runs" / "ckpt")
    assert f"'{tmp_path / 'runs'}' is a file, not a directory" in message, message


def test_the_checkpoint_before_a_failed_save_still_loads(fabric, saved, full_disk, monkeypatch):
    with pytest.raises(OSError):
        fabric.save(saved, {"model": _model(fabric), "step": 2})
    monkeypatch.undo()
    assert fabric.load(saved, {"model": _model(fabric)}) == {"step": 1}


# -- load errors ---------------------------------------------------------------------------------------


def _load_error(fabric: Fabric, path: Path, out_features: int = 2, state: bool = True) -> BaseException:
    with pytest.raises(Exception) as caught:
        fabric.load(path, {"model": _model(fabric, out_features), "step": 0} if state else None)
    _single_line_error(caught.value, path)
    return caught.value


@pytest.mark.parametrize("state", [True, False], ids=["into a state", "whole checkpoint"])
def test_a_missing_shard_is_named_with_its_number(fabric, saved, state):
    (saved / "__0_0.distcp").unlink()
    err = _load_error(fabric, saved, state=state)
    assert isinstance(err, CheckpointCorruptError)
    assert "missing shard __0_0.distcp (shard 1 of 1)" in str(err)


def test_a_truncated_shard_is_named_with_its_size(fabric, saved):
    shard = saved / "__0_0.distcp"
    size = shard.stat().st_size
    os.truncate(shard, 100)
    err = _load_error(fabric, saved)
    assert isinstance(err, CheckpointCorruptError)
    assert f"shard __0_0.distcp is truncated: 100 of {size} bytes" in str(err)


def test_a_truncated_shard_without_a_manifest_is_found_from_the_metadata(fabric, saved):
    (saved / integrity.MANIFEST_NAME).unlink()  # as written by an older version
    os.truncate(saved / "__0_0.distcp", 100)
    err = _load_error(fabric, saved)
    assert isinstance(err, CheckpointCorruptError) and "shard __0_0.distcp is truncated: 100 of " in str(err)


def test_a_corrupt_metadata_file_is_named(fabric, saved):
    (saved / ".metadata").write_bytes(b"not a pickle at all")
    err = _load_error(fabric, saved)
    assert isinstance(err, CheckpointCorruptError) and "the .metadata file is corrupt" in str(err)


def test_a_shape_mismatch_names_the_key_and_both_shapes(fabric, saved):
    err = _load_error(fabric, saved, out_features=3)
    assert isinstance(err, RuntimeError)
    assert "shape of key model.weight: saved (2, 4) vs expected (3, 4)" in str(err)
    assert "shape of key model.bias: saved (2,) vs expected (3,)" in str(err)


def test_a_folder_without_meta_pt_is_refused_instead_of_dropping_the_extra_keys(fabric, saved):
    (saved / "meta.pt").unlink()
    err = _load_error(fabric, saved)
    assert "meta.pt is missing: the save was interrupted or the folder was not written by fabric.save" in str(err)


# -- two processes -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_processes(run_script, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    return run_script("save_errors.py", str(tmp_path_factory.mktemp("two")))


@pytest.mark.parametrize("check", ["manifest of both ranks' shards", "full disk on one rank", "missing shard"])
def test_two_processes(two_processes, check):
    for rank in (0, 1):
        assert f"rank {rank} {check} ok" in two_processes.stdout, two_processes.stdout + two_processes.stderr[-6000:]


def test_a_full_disk_on_one_rank_is_the_same_one_line_error_on_every_rank(two_processes):
    errors = [line for line in two_processes.stdout.splitlines() if "error: [Errno 28]" in line]
    assert len(errors) == 2, two_processes.stdout + two_processes.stderr[-6000:]
    assert errors[0].split("error: ")[1] == errors[1].split("error: ")[1]
    assert "Cannot save checkpoint '" in errors[0] and "no space left on the device" in errors[0]


def test_verify_finds_a_flipped_byte_before_anything_is_loaded(fabric, saved):
    assert fabric.load(saved, {"model": _model(fabric)}, verify=True) == {"step": 1}
    shard = saved / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError, match=r"__0_0.distcp' fails its CRC-32 check"):
        fabric.load(saved, {"model": _model(fabric)}, verify=True)
