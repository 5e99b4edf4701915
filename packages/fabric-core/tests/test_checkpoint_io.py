"""TorchCheckpointIO and atomic_torch_save: round trips, atomic replacement and clear errors for bad files."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from fabric_core.io import CheckpointIO, TorchCheckpointIO, atomic_torch_save


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("this object refuses to be pickled")


class _Custom:
    """A plain Python object: fine for weights_only=False, refused by weights_only=True."""

    def __init__(self, value: int) -> None:
        self.value = value


def _leftovers(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def _checkpoint() -> dict:
    return {"weights": torch.arange(6.0).reshape(2, 3), "step": 7, "nested": {"lr": 0.1, "ids": [1, 2]}}


# -- round trip ---------------------------------------------------------------------------------------


def test_torch_checkpoint_io_is_a_checkpoint_io():
    assert isinstance(TorchCheckpointIO(), CheckpointIO)


def test_save_then_load_returns_an_equal_checkpoint(tmp_path):
    io = TorchCheckpointIO()
    path = tmp_path / "model.ckpt"
    io.save_checkpoint(_checkpoint(), path)
    loaded = io.load_checkpoint(path)
    assert torch.equal(loaded["weights"], _checkpoint()["weights"])
    assert loaded["step"] == 7
    assert loaded["nested"] == {"lr": 0.1, "ids": [1, 2]}


def test_save_accepts_a_string_path(tmp_path):
    io = TorchCheckpointIO()
    io.save_checkpoint({"a": 1}, str(tmp_path / "model.ckpt"))
    assert io.load_checkpoint(str(tmp_path / "model.ckpt")) == {"a": 1}


def test_save_creates_missing_parent_directories(tmp_path):
    path = tmp_path / "runs" / "1" / "model.ckpt"
    TorchCheckpointIO().save_checkpoint({"a": 1}, path)
    assert TorchCheckpointIO().load_checkpoint(path) == {"a": 1}


def test_save_overwrites_an_existing_checkpoint(tmp_path):
    io = TorchCheckpointIO()
    path = tmp_path / "model.ckpt"
    io.save_checkpoint({"version": 1}, path)
    io.save_checkpoint({"version": 2}, path)
    assert io.load_checkpoint(path) == {"version": 2}


def test_load_maps_tensors_to_the_cpu_by_default(tmp_path):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"t": torch.ones(2)}, path)
    assert TorchCheckpointIO().load_checkpoint(path)["t"].device == torch.device("cpu")


def test_load_applies_map_location(tmp_path):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"t": torch.ones(2)}, path)
    seen = []

    def map_location(storage, location):
        seen.append(location)
        return storage

    TorchCheckpointIO().load_checkpoint(path, map_location=map_location)
    assert seen == ["cpu"]


def test_default_load_accepts_arbitrary_python_objects(tmp_path):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"obj": _Custom(3)}, path)
    assert TorchCheckpointIO().load_checkpoint(path)["obj"].value == 3


def test_saved_file_is_readable_by_plain_torch_load(tmp_path):
    path = tmp_path / "model.ckpt"
    TorchCheckpointIO().save_checkpoint({"t": torch.ones(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["t"], torch.ones(3))


def test_saved_file_has_the_permissions_a_plain_torch_save_would_give(tmp_path):
    previous = os.umask(0o022)
    try:
        torch.save({"a": 1}, tmp_path / "plain.ckpt")
        atomic_torch_save({"a": 1}, tmp_path / "atomic.ckpt")
    finally:
        os.umask(previous)
    plain_mode = stat.S_IMODE(os.stat(tmp_path / "plain.ckpt").st_mode)
    atomic_mode = stat.S_IMODE(os.stat(tmp_path / "atomic.ckpt").st_mode)
    assert plain_mode == 0o644
    assert atomic_mode == plain_mode


# -- atomicity ----------------------------------------------------------------------------------------


def test_successful_save_leaves_no_temporary_file(tmp_path):
    TorchCheckpointIO().save_checkpoint(_checkpoint(), tmp_path / "model.ckpt")
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_failed_save_leaves_no_temporary_file(tmp_path):
    with pytest.raises(RuntimeError, match="refuses to be pickled"):
        TorchCheckpointIO().save_checkpoint({"bad": _Unpicklable()}, tmp_path / "model.ckpt")
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_the_previous_checkpoint_intact(tmp_path):
    io = TorchCheckpointIO()
    path = tmp_path / "model.ckpt"
    io.save_checkpoint({"version": 1, "t": torch.ones(4)}, path)
    with pytest.raises(RuntimeError, match="refuses to be pickled"):
        io.save_checkpoint({"version": 2, "bad": _Unpicklable()}, path)
    loaded = io.load_checkpoint(path)
    assert loaded["version"] == 1
    assert torch.equal(loaded["t"], torch.ones(4))
    assert _leftovers(tmp_path) == []


def test_save_interrupted_by_keyboard_interrupt_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"version": 1}, path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"version": 2}, path)
    monkeypatch.undo()
    assert TorchCheckpointIO().load_checkpoint(path) == {"version": 1}
    assert _leftovers(tmp_path) == []


def test_fsync_false_does_not_fsync(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    TorchCheckpointIO(fsync=False).save_checkpoint({"a": 1}, tmp_path / "model.ckpt")
    assert calls == []


def test_fsync_true_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    TorchCheckpointIO().save_checkpoint({"a": 1}, tmp_path / "model.ckpt")
    assert len(calls) == 2


def test_fsync_false_still_keeps_the_previous_checkpoint_on_failure(tmp_path):
    io = TorchCheckpointIO(fsync=False)
    path = tmp_path / "model.ckpt"
    io.save_checkpoint({"version": 1}, path)
    with pytest.raises(RuntimeError, match="refuses to be pickled"):
        io.save_checkpoint({"version": 2, "bad": _Unpicklable()}, path)
    assert io.load_checkpoint(path) == {"version": 1}
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_fsync_false_still_writes_through_a_temporary_file_and_a_rename(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace

    def replace(source, target):
        renames.append((os.path.basename(source), os.path.basename(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    TorchCheckpointIO(fsync=False).save_checkpoint({"a": 1}, tmp_path / "model.ckpt")
    assert len(renames) == 1
    source, target = renames[0]
    assert target == "model.ckpt"
    assert source != target and source.endswith(".tmp")


_WRITER = textwrap.dedent(
    """
    import sys
    import torch
    from fabric_core.io import atomic_torch_save

    path, first = sys.argv[1], int(sys.argv[2])
    data = torch.empty(50 * 2**20 // 4)  # 50 MB of float32
    version = first
    while True:
        data.fill_(float(version))
        atomic_torch_save({"version": version, "data": data}, path, fsync=False)
        print(version, flush=True)
        version += 1
    """
)


def test_checkpoint_survives_a_writer_killed_mid_save(tmp_path):
    """A process killed at any moment leaves one complete version at the path, never a torn file.

    Each round starts a writer, lets it complete at least one save, then kills it at a random moment
    (mostly in the middle of writing 50 MB). Later rounds run only while the time budget allows.
    """
    path = tmp_path / "big.ckpt"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    rng = random.Random(1234)
    no_new_round_after = time.monotonic() + 6
    first = 1
    for _ in range(3):
        writer = subprocess.Popen(
            [sys.executable, str(script), str(path), str(first)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert writer.stdout.readline().strip() == str(first), "the writer never completed a save"
            time.sleep(rng.uniform(0.0, 0.7))
        finally:
            writer.send_signal(signal.SIGKILL)
            rest, _ = writer.communicate(timeout=10)
        last_completed = int([str(first), *rest.split()][-1])

        loaded = TorchCheckpointIO().load_checkpoint(path)
        version = loaded["version"]
        # The rename of version N+1 may have happened just before the kill, ahead of its print.
        assert version in (last_completed, last_completed + 1)
        assert loaded["data"].numel() == 50 * 2**20 // 4
        assert loaded["data"].min().item() == loaded["data"].max().item() == float(version)
        first = version + 1
        if time.monotonic() > no_new_round_after:
            break


# -- errors -------------------------------------------------------------------------------------------


def test_load_of_a_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        TorchCheckpointIO().load_checkpoint(path)


def test_load_of_a_truncated_file_says_corrupt_or_truncated_and_names_the_path(tmp_path):
    path = tmp_path / "half.ckpt"
    atomic_torch_save({"t": torch.randn(1000)}, path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(RuntimeError, match=r"half\.ckpt.*(corrupt|truncated)"):
        TorchCheckpointIO().load_checkpoint(path)


def test_load_of_a_garbage_file_says_corrupt_and_names_the_path(tmp_path):
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(b"this is not a checkpoint at all\x00\x01\x02" * 10)
    with pytest.raises(RuntimeError, match=r"garbage\.ckpt.*(corrupt|truncated)"):
        TorchCheckpointIO().load_checkpoint(path)


def test_load_of_an_empty_file_says_corrupt_and_names_the_path(tmp_path):
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"empty\.ckpt.*(corrupt|truncated)"):
        TorchCheckpointIO().load_checkpoint(path)


def test_load_of_a_directory_explains_that_it_needs_the_sharding_strategy(tmp_path):
    directory = tmp_path / "sharded.ckpt"
    directory.mkdir()
    with pytest.raises(IsADirectoryError, match=r"sharded\.ckpt.*is a directory.*strategy"):
        TorchCheckpointIO().load_checkpoint(directory)


def test_weights_only_refusal_is_not_reported_as_a_corrupt_file(tmp_path):
    path = tmp_path / "objects.ckpt"
    atomic_torch_save({"obj": _Custom(1)}, path)
    with pytest.raises(Exception, match="weights_only") as error:
        TorchCheckpointIO(weights_only=True).load_checkpoint(path)
    assert "corrupt" not in str(error.value)


def test_storage_options_are_rejected_naming_the_value(tmp_path):
    path = tmp_path / "model.ckpt"
    with pytest.raises(TypeError, match=r"storage_options.*\{'compress': True\}"):
        TorchCheckpointIO().save_checkpoint({"a": 1}, path, storage_options={"compress": True})
    assert not path.exists()


# -- removal ------------------------------------------------------------------------------------------


def test_remove_checkpoint_deletes_a_file(tmp_path):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"a": 1}, path)
    TorchCheckpointIO().remove_checkpoint(path)
    assert not path.exists()


def test_remove_checkpoint_deletes_a_directory_with_its_contents(tmp_path):
    directory = tmp_path / "sharded.ckpt"
    (directory / "shards").mkdir(parents=True)
    (directory / "shards" / "rank0.pt").write_bytes(b"x")
    (directory / "meta.pt").write_bytes(b"y")
    TorchCheckpointIO().remove_checkpoint(str(directory))
    assert not directory.exists()
    assert tmp_path.exists()
