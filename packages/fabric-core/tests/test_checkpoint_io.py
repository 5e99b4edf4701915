"""TorchCheckpointIO and atomic_torch_save: round trips, atomic replacement and clear errors for bad files."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from fabric_core.io import (
    CheckpointIO,
    TorchCheckpointIO,
    atomic_torch_save,
    previous_version_path,
    torch_io,
    wait_for_checkpoint_flushes,
)


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("this object refuses to be pickled")


class _Custom:
    """A plain Python object: fine for weights_only=False, refused by weights_only=True."""

    def __init__(self, value: int) -> None:
        self.value = value


def _leftovers(directory) -> list[str]:
    """Hidden entries a save left beside its checkpoints (the kept ``.previous`` version is not one)."""
    return sorted(name for name in os.listdir(directory) if name.startswith(".") and not name.endswith(".previous"))


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


@pytest.mark.parametrize("background", [True, False])
def test_fsync_true_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch, background):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    TorchCheckpointIO(fsync_in_background=background).save_checkpoint({"a": 1}, tmp_path / "model.ckpt")
    wait_for_checkpoint_flushes()
    assert len(calls) == 2


# -- the flush after the rename -----------------------------------------------------------------------


class _HeldFsync:
    """Replaces os.fsync: calls from the background flush thread wait until release()."""

    def __init__(self, monkeypatch, error: OSError | None = None) -> None:
        self._release = threading.Event()
        self._error = error
        self.calls: list[tuple[str, int]] = []
        self._real = os.fsync
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd: int) -> None:
        thread = threading.current_thread().name
        self.calls.append((thread, fd))
        if thread == "fabric-checkpoint-fsync":
            assert self._release.wait(30), "the test never released the flush"
            if self._error is not None:
                raise self._error
        self._real(fd)

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def no_pending_flushes():
    yield
    # A test that fails halfway must not leave its flush to the next test.
    try:
        wait_for_checkpoint_flushes()
    except RuntimeError:
        pass


def test_background_save_returns_before_the_flush_with_the_file_complete(tmp_path, monkeypatch, no_pending_flushes):
    held = _HeldFsync(monkeypatch)
    path = tmp_path / "model.ckpt"
    TorchCheckpointIO().save_checkpoint(_checkpoint(), path)
    # The flush has not happened, yet the file is in place and whole, for this process and for others.
    deadline = time.monotonic() + 30
    while not held.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [name for name, _ in held.calls] == ["fabric-checkpoint-fsync"]
    code = f"import torch; print(torch.load({str(path)!r}, weights_only=False)['step'])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert other.stdout.strip() == "7", other.stderr
    held.release()
    wait_for_checkpoint_flushes()
    assert torch_io._pending == []


def test_overwrite_keeps_the_previous_version_until_the_flush_is_done(tmp_path, monkeypatch, no_pending_flushes):
    io = TorchCheckpointIO()
    path = tmp_path / "model.ckpt"
    io.save_checkpoint({"version": 1}, path)
    wait_for_checkpoint_flushes()
    assert not previous_version_path(path).exists()

    held = _HeldFsync(monkeypatch)
    io.save_checkpoint({"version": 2}, path)
    previous = previous_version_path(path)
    assert previous == tmp_path / ".model.ckpt.previous"
    assert torch.load(previous) == {"version": 1}
    assert torch.load(path) == {"version": 2}
    held.release()
    wait_for_checkpoint_flushes()
    assert not previous.exists()
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]


def test_load_does_not_wait_for_the_flush(tmp_path, monkeypatch, no_pending_flushes):
    held = _HeldFsync(monkeypatch)
    io = TorchCheckpointIO()
    path = tmp_path / "model.ckpt"
    io.save_checkpoint({"a": 1}, path)
    assert io.load_checkpoint(path) == {"a": 1}
    assert len(torch_io._pending) == 1  # still flushing
    held.release()
    wait_for_checkpoint_flushes()


def test_next_save_waits_for_the_previous_flush(tmp_path, monkeypatch, no_pending_flushes):
    held = _HeldFsync(monkeypatch)
    io = TorchCheckpointIO()
    io.save_checkpoint({"a": 1}, tmp_path / "one.ckpt")
    threading.Timer(0.3, held.release).start()
    io.save_checkpoint({"a": 2}, tmp_path / "two.ckpt")
    # The first flush was done before the second save started: at most one is ever in flight.
    assert len(torch_io._pending) == 1 and torch_io._pending[0].path == tmp_path / "two.ckpt"


def test_teardown_waits_for_the_flush(tmp_path, monkeypatch, no_pending_flushes):
    held = _HeldFsync(monkeypatch)
    io = TorchCheckpointIO()
    io.save_checkpoint({"a": 1}, tmp_path / "model.ckpt")
    threading.Timer(0.2, held.release).start()
    io.teardown()
    assert torch_io._pending == []


def test_failed_flush_is_raised_once_by_the_next_save_naming_the_file(tmp_path, monkeypatch, no_pending_flushes):
    held = _HeldFsync(monkeypatch, error=OSError(5, "Input/output error"))
    io = TorchCheckpointIO()
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"version": 1}, path, fsync=False)
    io.save_checkpoint({"version": 2}, path)
    held.release()
    with pytest.raises(RuntimeError, match=r"model\.ckpt' was written completely.*Input/output error") as raised:
        io.save_checkpoint({"version": 3}, tmp_path / "other.ckpt")
    # Raised before the new save wrote anything, and the old version is not thrown away when the new
    # one may not be on the disk.
    assert not (tmp_path / "other.ckpt").exists()
    assert str(previous_version_path(path)) in str(raised.value)
    assert torch.load(previous_version_path(path)) == {"version": 1}
    assert io.load_checkpoint(path) == {"version": 2}  # the file itself is whole
    monkeypatch.undo()
    io.save_checkpoint({"version": 3}, tmp_path / "other.ckpt")  # reported once: saving again works
    wait_for_checkpoint_flushes()


def test_without_hard_links_the_new_file_is_flushed_before_it_replaces_the_old(
    tmp_path, monkeypatch, no_pending_flushes
):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(1, "Operation not permitted")))
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        os, "replace", lambda a, b: events.append(f"replace {os.path.basename(b)}") or real_replace(a, b)
    )
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"version": 1}, path, fsync=False)
    events.clear()
    TorchCheckpointIO().save_checkpoint({"version": 2}, path)
    assert events[:2] == ["fsync", "replace model.ckpt"]
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]


def test_failed_save_after_keeping_the_previous_version_leaves_only_the_old_file(
    tmp_path, monkeypatch, no_pending_flushes
):
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"version": 1}, path, fsync=False)
    real_replace = os.replace

    def replace(source, target):
        if os.path.basename(target) == "model.ckpt":
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match=r"(?i)no space left") as raised:
        TorchCheckpointIO().save_checkpoint({"version": 2}, path)
    assert raised.value.errno == 28 and f"'{path}'" in str(raised.value)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]
    assert TorchCheckpointIO().load_checkpoint(path) == {"version": 1}


def test_without_a_thread_to_flush_in_the_save_flushes_before_returning(tmp_path, monkeypatch, no_pending_flushes):
    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    path = tmp_path / "model.ckpt"
    atomic_torch_save({"version": 1}, path, fsync=False)
    TorchCheckpointIO().save_checkpoint({"version": 2}, path)
    assert torch_io._pending == []
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]
    assert torch.load(path) == {"version": 2}


def test_corrupt_file_with_a_kept_previous_version_points_to_it(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"version": 1}, previous_version_path(path))
    path.write_bytes(b"\0" * 100)  # what a power loss before the flush can leave on some filesystems
    with pytest.raises(RuntimeError, match=r"corrupt.*\.model\.ckpt\.previous.*Load that one"):
        TorchCheckpointIO().load_checkpoint(path)


def test_remove_checkpoint_removes_a_kept_previous_version_too(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"version": 1}, previous_version_path(path))
    torch.save({"version": 2}, path)
    TorchCheckpointIO().remove_checkpoint(path)
    assert os.listdir(tmp_path) == []


_SAVE_AND_EXIT = textwrap.dedent(
    """
    import os, sys, time
    from fabric_core.io import TorchCheckpointIO

    real_fsync = os.fsync

    def slow_fsync(fd):
        time.sleep(0.5)
        real_fsync(fd)
        print("flushed", fd, flush=True)

    os.fsync = slow_fsync
    if sys.argv[2] == "fail":
        def failing_fsync(fd):
            raise OSError(5, "Input/output error")
        os.fsync = failing_fsync
    TorchCheckpointIO().save_checkpoint({"a": 1}, sys.argv[1])
    print("saved", flush=True)
    """
)


def test_process_ending_right_after_a_save_waits_for_the_flush(tmp_path):
    script = tmp_path / "save_and_exit.py"
    script.write_text(_SAVE_AND_EXIT)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model.ckpt"), "ok"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "saved" and "flushed" in lines


def test_flush_failing_at_the_end_of_the_process_is_printed(tmp_path):
    script = tmp_path / "save_and_exit.py"
    script.write_text(_SAVE_AND_EXIT)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model.ckpt"), "fail"], capture_output=True, text=True, timeout=120
    )
    assert "saved" in result.stdout
    assert "model.ckpt' was written completely" in result.stderr
    assert "Input/output error" in result.stderr


@pytest.mark.parametrize("argument", ["fsync", "fsync_in_background", "weights_only"])
def test_flags_must_be_booleans(argument):
    with pytest.raises(TypeError, match=rf"{argument}='yes'.*True or False"):
        TorchCheckpointIO(**{argument: "yes"})


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
    assert source != target and source.startswith(".model.ckpt.tmp.")


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
