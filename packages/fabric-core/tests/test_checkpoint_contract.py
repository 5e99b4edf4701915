"""The checkpoint building blocks other packages use: fault points, owned temporaries, errors, integrity."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from fabric_core.io import errors, faults, integrity, leftovers

# -- faults -------------------------------------------------------------------------------------------


def test_checkpoint_step_is_a_no_op():
    assert faults.checkpoint_step("tmp-written") is None


# -- leftovers ----------------------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


def _named(tmp_path, kind: str, host: str, pid: int, token: str = "0123abcd"):
    return tmp_path / f".model.ckpt.{kind}.{host}.{pid}.{token}"


def test_owned_path_names_the_checkpoint_kind_host_and_process(tmp_path):
    owned = leftovers.owned_path(tmp_path / "model.ckpt", "tmp")
    assert owned.parent == tmp_path
    assert owned.name.startswith(f".model.ckpt.tmp.{leftovers.host_id()}.{os.getpid()}.")
    assert leftovers.owner_of(owned, tmp_path / "model.ckpt") == ("tmp", leftovers.host_id(), os.getpid())
    assert owned != leftovers.owned_path(tmp_path / "model.ckpt", "tmp")  # a random token each time


@pytest.mark.parametrize("kind", ["", "a.b", "a/b", 3])
def test_owned_path_refuses_a_kind_with_dots_or_slashes(tmp_path, kind):
    with pytest.raises(ValueError, match="owned_path"):
        leftovers.owned_path(tmp_path / "model.ckpt", kind)


def test_remove_leftovers_removes_files_and_folders_of_dead_owners(tmp_path):
    pid = _dead_pid()
    dead_file = _named(tmp_path, "tmp", leftovers.host_id(), pid)
    dead_file.write_bytes(b"partial")
    dead_folder = _named(tmp_path, "partial", leftovers.host_id(), pid, "feedbeef")
    (dead_folder / "sub").mkdir(parents=True)
    (dead_folder / "sub" / "shard").write_bytes(b"x")
    removed = leftovers.remove_leftovers(tmp_path / "model.ckpt")
    assert sorted(removed) == sorted([dead_file, dead_folder])
    assert not dead_file.exists() and not dead_folder.exists()


def test_remove_leftovers_keeps_entries_of_live_processes(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = _named(tmp_path, "tmp", leftovers.host_id(), sleeper.pid)
        live.write_bytes(b"being written")
        mine = leftovers.owned_path(tmp_path / "model.ckpt", "tmp")
        mine.write_bytes(b"mine")
        assert leftovers.remove_leftovers(tmp_path / "model.ckpt") == []
        assert live.exists() and mine.exists()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=60)


def test_remove_leftovers_treats_a_zombie_owner_as_gone(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60
        while leftovers.pid_is_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # exited but not reaped: a zombie
        zombie_owned = _named(tmp_path, "tmp", leftovers.host_id(), child.pid)
        zombie_owned.write_bytes(b"x")
        assert leftovers.remove_leftovers(tmp_path / "model.ckpt") == [zombie_owned]
    finally:
        child.wait(timeout=60)


def test_remove_leftovers_never_touches_other_hosts_or_other_names(tmp_path):
    pid = _dead_pid()
    keep = [
        _named(tmp_path, "tmp", "another-host~1", pid),
        tmp_path / "model.ckpt",
        tmp_path / ".model.ckpt.previous",
        tmp_path / f".model.ckpt.v2.tmp.{leftovers.host_id()}.{pid}.0123abcd",  # another checkpoint's temporary
        tmp_path / f".other.ckpt.tmp.{leftovers.host_id()}.{pid}.0123abcd",
    ]
    for entry in keep:
        entry.write_bytes(b"x")
    assert leftovers.remove_leftovers(tmp_path / "model.ckpt") == []
    assert all(entry.exists() for entry in keep)


def test_remove_leftovers_removes_old_format_temporaries_only_once_idle(tmp_path):
    stale = tmp_path / ".model.ckpt.k3j_9xqa.tmp"
    fresh = tmp_path / ".model.ckpt.ab12cd34.tmp"
    staging = tmp_path / f".model.ckpt.previous.{_dead_pid()}.tmp"
    for entry in (stale, fresh, staging):
        entry.write_bytes(b"x")
    old = time.time() - leftovers.LEGACY_LEFTOVER_AGE_S - 60
    os.utime(stale, (old, old))
    assert sorted(leftovers.remove_leftovers(tmp_path / "model.ckpt")) == sorted([stale, staging])
    assert fresh.exists()


def test_remove_leftovers_of_a_missing_folder_is_empty(tmp_path):
    assert leftovers.remove_leftovers(tmp_path / "nope" / "model.ckpt") == []


# -- errors -------------------------------------------------------------------------------------------


def test_no_space_keeps_its_errno_and_names_the_checkpoint(tmp_path):
    path = tmp_path / "model.ckpt"
    err = errors.explain_save_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".tmp")), path)
    assert type(err) is OSError and err.errno == errno.ENOSPC
    assert f"'{path}'" in str(err) and "no space left" in str(err) and "free in" in str(err)
    assert "\n" not in str(err)


def test_torch_enforce_message_becomes_the_os_error_behind_it(tmp_path):
    path = tmp_path / "model.ckpt"
    raw = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1309888 vs 1309840")
    raw.__context__ = OSError(errno.ENOSPC, "No space left on device")  # as torch.save leaves it
    err = errors.explain_save_error(raw, path, needed=1309888)
    assert err.errno == errno.ENOSPC and "inline_container" not in str(err)
    assert "about 1.2 MiB needed" in str(err)


def test_torch_enforce_message_without_a_cause_still_names_the_checkpoint(tmp_path):
    err = errors.explain_save_error(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos"), "m.pt")
    assert isinstance(err, RuntimeError) and "'m.pt'" in str(err) and "full or failing" in str(err)


@pytest.mark.parametrize(
    ("code", "error_type", "words"),
    [
        (errno.EROFS, OSError, "read-only file system"),
        (errno.EACCES, PermissionError, "permission denied"),
        (errno.EPERM, PermissionError, "permission denied"),
        (errno.EISDIR, IsADirectoryError, "a directory is at that path"),
        (errno.EIO, OSError, "Input/output error"),
    ],
)
def test_os_save_errors_name_the_checkpoint_not_the_temporary(tmp_path, code, error_type, words):
    path = tmp_path / "model.ckpt"
    tmp = tmp_path / ".model.ckpt.tmp.h.1.abcd"
    err = errors.explain_save_error(OSError(code, os.strerror(code), str(tmp)), path)
    assert isinstance(err, error_type) and err.errno == code
    assert f"Cannot save checkpoint '{path}'" in str(err) and words in str(err)
    assert err.checkpoint_path == str(path)


def test_a_file_where_a_folder_must_be_is_not_a_directory_error(tmp_path):
    (tmp_path / "runs").write_text("a file")
    path = tmp_path / "runs" / "epoch1" / "model.ckpt"
    err = errors.explain_save_error(FileExistsError(errno.EEXIST, "File exists", str(tmp_path / "runs")), path)
    assert isinstance(err, NotADirectoryError) and err.errno == errno.ENOTDIR
    assert f"'{tmp_path / 'runs'}' is a file, not a directory" in str(err)


def test_unknown_errors_are_returned_unchanged(tmp_path):
    original = ValueError("something else")
    assert errors.explain_save_error(original, tmp_path / "m") is original
    assert errors.explain_load_error(original, tmp_path / "m") is original


def test_explaining_twice_changes_nothing(tmp_path):
    once = errors.explain_save_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "m")
    assert errors.explain_save_error(once, tmp_path / "m") is once


def test_load_permission_error_names_the_checkpoint(tmp_path):
    path = tmp_path / "model.ckpt"
    err = errors.explain_load_error(PermissionError(errno.EACCES, "Permission denied", str(path)), path)
    assert isinstance(err, PermissionError) and f"Cannot load checkpoint '{path}'" in str(err) and "chmod" in str(err)


def test_load_not_found_points_at_the_kept_previous_version(tmp_path):
    path = tmp_path / "model.ckpt"
    (tmp_path / ".model.ckpt.previous").write_bytes(b"old")
    err = errors.explain_load_error(FileNotFoundError(errno.ENOENT, "No such file", str(path)), path)
    assert isinstance(err, FileNotFoundError) and ".model.ckpt.previous" in str(err)


def test_load_through_a_file_is_not_a_directory_error(tmp_path):
    (tmp_path / "runs").write_text("a file")
    path = tmp_path / "runs" / "model.ckpt"
    err = errors.explain_load_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path)), path)
    assert isinstance(err, NotADirectoryError) and f"'{tmp_path / 'runs'}' is a file" in str(err)


# -- integrity ----------------------------------------------------------------------------------------


def _saved(tmp_path, name="model.ckpt"):
    path = tmp_path / name
    torch.save({"weights": torch.arange(4096.0), "step": 3}, path)
    return path


def _flip_byte_in_tensor_data(path) -> str:
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 1000)
        archive.open(info).close()  # reads the local header so that the data offset below is right
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        data_start = info.header_offset + 30 + name_len + extra_len
        f.seek(data_start + 100)
        byte = f.read(1)
        f.seek(data_start + 100)
        f.write(bytes([byte[0] ^ 0x01]))
    return info.filename


def test_checksum_file_gives_size_and_crc(tmp_path):
    file = tmp_path / "f"
    file.write_bytes(b"hello")
    assert integrity.checksum_file(file) == {"size": 5, "crc32": "3610a686"}


def test_manifest_round_trip_keeps_extras_and_leaves_no_temporary(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    target = integrity.write_manifest(tmp_path, {"a": integrity.checksum_file(tmp_path / "a")}, world_size=2)
    assert target == tmp_path / integrity.MANIFEST_NAME
    manifest = integrity.read_manifest(tmp_path)
    assert manifest["files"] == {"a": {"size": 3, "crc32": "352441c2"}} and manifest["world_size"] == 2
    assert sorted(os.listdir(tmp_path)) == ["a", integrity.MANIFEST_NAME]


def test_read_manifest_of_a_folder_without_one_is_none_and_a_damaged_one_an_error(tmp_path):
    assert integrity.read_manifest(tmp_path) is None
    (tmp_path / integrity.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        integrity.read_manifest(tmp_path)


def test_an_intact_torch_save_file_verifies(tmp_path):
    assert integrity.verify_checkpoint(_saved(tmp_path)) == []


def test_a_flipped_byte_in_tensor_data_is_found(tmp_path):
    path = _saved(tmp_path)
    record = _flip_byte_in_tensor_data(path)
    problems = integrity.verify_checkpoint(path)
    assert len(problems) == 1 and f"'{path}'" in problems[0] and record in problems[0] and "CRC-32" in problems[0]


def test_a_truncated_file_is_a_problem(tmp_path):
    path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:-200])
    assert "truncated or damaged" in integrity.verify_checkpoint(path)[0]


def test_a_legacy_format_file_cannot_be_verified(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    assert "cannot be verified" in integrity.verify_checkpoint(path)[0]


def test_a_file_written_without_crc_says_so(tmp_path):
    torch.serialization.set_crc32_options(False)
    try:
        path = _saved(tmp_path)
    finally:
        torch.serialization.set_crc32_options(True)
    problems = integrity.verify_checkpoint(path)
    assert len(problems) == 1 and "set_crc32_options(False)" in problems[0]


def test_a_missing_path_is_a_problem(tmp_path):
    assert "does not exist" in integrity.verify_checkpoint(tmp_path / "nope")[0]


def _folder_checkpoint(tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    for name, data in (("shard0", b"a" * 100), ("shard1", b"b" * 100)):
        (folder / name).write_bytes(data)
    integrity.write_manifest(folder, {n: integrity.checksum_file(folder / n) for n in ("shard0", "shard1")})
    return folder


def test_a_folder_with_its_manifest_verifies(tmp_path):
    assert integrity.verify_checkpoint(_folder_checkpoint(tmp_path)) == []


def test_a_folder_problems_name_each_file(tmp_path):
    folder = _folder_checkpoint(tmp_path)
    (folder / "shard0").unlink()
    (folder / "shard1").write_bytes(b"b" * 99 + b"c")
    problems = integrity.verify_checkpoint(folder)
    assert len(problems) == 2
    assert "shard0' is missing" in problems[0] and "shard1' fails its CRC-32 check" in problems[1]


def test_a_folder_shorter_than_written_is_a_problem(tmp_path):
    folder = _folder_checkpoint(tmp_path)
    (folder / "shard1").write_bytes(b"b" * 50)
    assert "50 bytes, but 100 were written" in integrity.verify_checkpoint(folder)[0]


def test_a_folder_without_manifest_cannot_be_verified(tmp_path):
    folder = _folder_checkpoint(tmp_path)
    (folder / integrity.MANIFEST_NAME).unlink()
    assert f"no {integrity.MANIFEST_NAME}" in integrity.verify_checkpoint(folder)[0]


def test_checkpoint_corrupt_error_lists_problems_and_survives_pickling():
    err = integrity.CheckpointCorruptError("m.ckpt", ["'m.ckpt': record 'x' fails its CRC-32 check."])
    assert isinstance(err, RuntimeError) and "'m.ckpt'" in str(err) and "record 'x'" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert again.problems == err.problems and again.path == "m.ckpt"


def test_contract_modules_import_without_torch():
    code = (
        "import sys; import fabric_core.io.errors, fabric_core.io.leftovers, fabric_core.io.faults, "
        "fabric_core.io.integrity; print(json.dumps('torch' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) is False
