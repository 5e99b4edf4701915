"""Save and load errors name the checkpoint, say the cause in one line and the fix, and leave nothing partial.

A full disk is a real small tmpfs where this process may mount one (root with CAP_SYS_ADMIN), and
``/dev/full`` under the temporary file's descriptor everywhere. A read-only file system is a real
read-only tmpfs where mounting is allowed, and an injected ``EROFS`` everywhere. Permission denied runs
the save as user ``nobody`` when the tests run as root (root ignores file permissions).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from fabric_core import Fabric
from fabric_core.io import TorchCheckpointIO, atomic_torch_save, explain_save_error, torch_io

NOBODY = 65534


def _fabric() -> Fabric:
    return Fabric(accelerator="cpu", devices=1)


def _mount_tmpfs(directory, size: str) -> bool:
    directory.mkdir(exist_ok=True)
    if sys.platform != "linux":
        return False
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB file system, or a skip where this process may not mount one."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN); /dev/full tests cover it")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def _assert_names_only_the_checkpoint(message: str, path) -> None:
    assert f"'{path}'" in message
    assert ".tmp." not in message and "inline_container" not in message and "enforce fail" not in message


# -- full disk -----------------------------------------------------------------------------------------


def test_a_full_disk_says_no_space_names_the_checkpoint_and_leaves_the_old_one(small_disk):
    path = small_disk / "model.ckpt"
    atomic_torch_save({"version": 1}, path)
    with pytest.raises(OSError) as raised:
        _fabric().save(path, {"weights": torch.zeros(400_000), "version": 2})
    assert raised.value.errno == errno.ENOSPC
    message = str(raised.value)
    _assert_names_only_the_checkpoint(message, path)
    assert "no space left" in message and "free in" in message and "MiB needed" in message
    assert "\n" not in message
    assert os.listdir(small_disk) == ["model.ckpt"]
    assert TorchCheckpointIO().load_checkpoint(path) == {"version": 1}


@pytest.mark.parametrize("background", [True, False])
def test_a_write_failing_with_enospc_is_explained_and_cleaned_up(tmp_path, monkeypatch, background):
    real = torch_io._create_temporary

    def onto_dev_full(path):
        fd, tmp = real(path)
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, fd)  # every write to the temporary file now fails with ENOSPC
        os.close(full)
        return fd, tmp

    path = tmp_path / "model.ckpt"
    atomic_torch_save({"version": 1}, path)
    monkeypatch.setattr(torch_io, "_create_temporary", onto_dev_full)
    with pytest.raises(OSError) as raised:
        TorchCheckpointIO(fsync_in_background=background).save_checkpoint({"weights": torch.zeros(100_000)}, path)
    assert raised.value.errno == errno.ENOSPC
    _assert_names_only_the_checkpoint(str(raised.value), path)
    assert os.listdir(tmp_path) == ["model.ckpt"]
    assert TorchCheckpointIO().load_checkpoint(path) == {"version": 1}


# -- read-only file system -----------------------------------------------------------------------------


def test_a_read_only_file_system_names_the_checkpoint_not_the_temporary(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("cannot mount a tmpfs here; the injected EROFS test covers the message")
    try:
        atomic_torch_save({"version": 1}, disk / "model.ckpt")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, capture_output=True, timeout=30)
        with pytest.raises(OSError) as raised:
            _fabric().save(disk / "model.ckpt", {"version": 2})
        assert raised.value.errno == errno.EROFS
        _assert_names_only_the_checkpoint(str(raised.value), disk / "model.ckpt")
        assert "read-only file system" in str(raised.value)
        assert TorchCheckpointIO().load_checkpoint(disk / "model.ckpt") == {"version": 1}
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def test_an_injected_read_only_error_names_the_checkpoint(tmp_path, monkeypatch):
    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path.with_name(f".{path.name}.tmp.x.1.ab")))

    monkeypatch.setattr(torch_io, "_create_temporary", read_only)
    path = tmp_path / "model.ckpt"
    with pytest.raises(OSError) as raised:
        _fabric().save(path, {"version": 2})
    assert raised.value.errno == errno.EROFS
    _assert_names_only_the_checkpoint(str(raised.value), path)
    assert "read-only file system" in str(raised.value) and "writable location" in str(raised.value)


# -- permission denied and a file in the way -------------------------------------------------------------

_SAVE_AS = textwrap.dedent(
    """
    import os, sys
    import pwd  # noqa: F401  (imported before dropping privileges: nobody cannot read this environment)
    import torch
    from fabric_core import Fabric
    from fabric_core.io import errors, leftovers, torch_io  # noqa: F401

    fabric = Fabric(accelerator="cpu", devices=1)
    if os.geteuid() == 0:
        os.setgid({nobody}); os.setuid({nobody})  # root ignores permissions: save as nobody
    try:
        fabric.save(sys.argv[1], {{"version": 2, "t": torch.ones(3)}})
    except PermissionError as err:
        print("PermissionError", err.errno, err)
    """
).format(nobody=NOBODY)


@pytest.fixture
def reachable_dir(tmp_path):
    """A folder the save's user can reach: under root, one in /tmp that user nobody may enter."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    base = Path(tempfile.mkdtemp(prefix="fabric-permission-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_permission_denied_names_the_checkpoint_and_the_folder(reachable_dir):
    folder = reachable_dir / "locked"
    folder.mkdir()
    atomic_torch_save({"version": 1}, folder / "model.ckpt")
    script = reachable_dir / "save_as.py"
    script.write_text(_SAVE_AS)
    os.chmod(script, 0o644)
    os.chmod(folder, 0o555)
    try:
        result = subprocess.run(
            [sys.executable, str(script), str(folder / "model.ckpt")], capture_output=True, text=True, timeout=180
        )
    finally:
        os.chmod(folder, 0o755)
    assert result.stdout.startswith(f"PermissionError {errno.EACCES} "), result.stdout + result.stderr
    _assert_names_only_the_checkpoint(result.stdout, folder / "model.ckpt")
    assert f"permission denied writing in '{folder}'" in result.stdout and "chmod" in result.stdout
    assert sorted(os.listdir(folder)) == ["model.ckpt"]
    assert TorchCheckpointIO().load_checkpoint(folder / "model.ckpt") == {"version": 1}


def test_permission_denied_above_the_folder_is_explained_too(tmp_path):
    err = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "a"))
    explained = explain_save_error(err, tmp_path / "a" / "b" / "model.ckpt")
    assert isinstance(explained, PermissionError) and "model.ckpt'" in str(explained)


def test_a_parent_that_is_a_file_is_not_a_directory_error(tmp_path):
    (tmp_path / "runs").write_text("a file where the folder should be")
    for path in (tmp_path / "runs" / "model.ckpt", tmp_path / "runs" / "epoch1" / "model.ckpt"):
        with pytest.raises(NotADirectoryError) as raised:
            _fabric().save(path, {"version": 1})
        assert raised.value.errno == errno.ENOTDIR
        assert f"'{path}'" in str(raised.value) and f"'{tmp_path / 'runs'}' is a file" in str(raised.value)


def test_a_folder_at_the_checkpoint_path_is_explained(tmp_path):
    (tmp_path / "model.ckpt").mkdir()
    with pytest.raises(IsADirectoryError, match=r"model\.ckpt'.*a directory is at that path"):
        _fabric().save(tmp_path / "model.ckpt", {"version": 1})
    assert os.listdir(tmp_path) == ["model.ckpt"]


# -- load errors ---------------------------------------------------------------------------------------


def test_a_shape_mismatch_names_the_checkpoint_and_every_mismatched_key(tmp_path):
    fabric = _fabric()
    path = tmp_path / "model.ckpt"
    fabric.save(path, {"model": nn.Linear(4, 3), "step": 1})
    with pytest.raises(RuntimeError) as raised:
        fabric.load(path, {"model": nn.Linear(4, 2)})
    message = str(raised.value)
    assert f"Checkpoint '{path}' (key 'model')" in message
    assert "shape of key 'weight': saved (3, 4) vs expected (2, 4)" in message
    assert "shape of key 'bias': saved (3,) vs expected (2,)" in message
    assert "same configuration" in message


def test_a_shape_mismatch_in_load_raw_names_the_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(nn.Linear(4, 3).state_dict(), path)
    with pytest.raises(RuntimeError, match=r"weights\.pt'.*\n  shape of key 'weight': saved \(3, 4\) vs expected"):
        _fabric().load_raw(path, nn.Linear(4, 2))


def test_missing_keys_name_the_checkpoint_and_suggest_strict_false(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2, 4)}, path)
    with pytest.raises(RuntimeError, match=r"(?s)weights\.pt'.*Missing key\(s\): bias.*strict=False"):
        _fabric().load_raw(path, nn.Linear(4, 2))


def test_an_optimizer_mismatch_names_the_checkpoint(tmp_path):
    path = tmp_path / "model.ckpt"
    fabric = _fabric()
    fabric.save(path, {"optimizer": torch.optim.SGD(nn.Linear(4, 2).parameters(), lr=0.1)})
    other = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"model\.ckpt' \(key 'optimizer'\) does not fit the optimizer"):
        fabric.load(path, {"optimizer": other})


def test_loading_through_a_file_is_a_not_a_directory_error_naming_the_checkpoint(tmp_path):
    (tmp_path / "runs").write_text("a file")
    path = tmp_path / "runs" / "model.ckpt"
    with pytest.raises(NotADirectoryError, match=rf"Cannot load checkpoint '{path}'.*runs' is a file"):
        _fabric().load(path)


def test_a_load_permission_error_goes_through_the_explanation(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"version": 1}, path)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(PermissionError, match=rf"Cannot load checkpoint '{path}': permission denied.*chmod"):
        _fabric().load(path)


def test_a_corrupt_file_names_the_checkpoint_and_the_fix(tmp_path):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"t": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(RuntimeError) as raised:
        _fabric().load(path)
    message = str(raised.value)
    assert f"Checkpoint '{path}' is corrupt or truncated" in message
    assert "load an earlier checkpoint" in message and "fabric checkpoint verify" in message


def test_a_missing_checkpoint_mentions_the_kept_previous_version(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"version": 1}, tmp_path / ".model.ckpt.previous")
    with pytest.raises(FileNotFoundError, match=r"model\.ckpt'.*\.model\.ckpt\.previous"):
        _fabric().load(path)
