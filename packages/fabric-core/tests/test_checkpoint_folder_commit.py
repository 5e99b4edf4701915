"""fabric_core.io.commit: a checkpoint folder put in place so that a crash at any step loses nothing.

The folders here are small stand-ins for a plugin's checkpoint (one data file and a manifest). A crash is a
subprocess that commits and ends itself (``os._exit``) right after one step; its folders then belong to an
ended process, as after a real crash.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fabric_core.io import commit, faults, integrity, leftovers

RULES = commit.Rules(name="test")
CRASH_EXIT = 17


def _checkpoint(folder: Path, value: str, saved: float | None = None, manifest: bool = True) -> Path:
    """A complete folder checkpoint holding ``value`` (its manifest records ``saved``, default now)."""
    folder.mkdir()
    (folder / "data").write_text(value)
    if manifest:
        files = {"data": integrity.checksum_file(folder / "data")}
        integrity.write_manifest(folder, files, saved_at=time.time() if saved is None else saved)
    return folder


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _owned(path: Path, kind: str, pid: int, host: str | None = None) -> Path:
    return path.with_name(f".{path.name}.{kind}.{host or leftovers.host_id()}.{pid}.0badc0de")


@pytest.fixture
def steps(monkeypatch) -> list[str]:
    """The fault-injection steps the code under test passes, in order."""
    passed: list[str] = []
    monkeypatch.setattr(faults, "checkpoint_step", passed.append)
    return passed


@pytest.fixture(params=[True, False], ids=["exchange", "two-renames"])
def use_exchange(request, monkeypatch) -> bool:
    monkeypatch.setattr(commit, "USE_RENAME_EXCHANGE", request.param)
    return request.param


# -- commit --------------------------------------------------------------------------------------------


def test_a_first_commit_renames_the_staging_folder_into_place(tmp_path, steps):
    path = tmp_path / "ckpt"
    staging = _checkpoint(leftovers.owned_path(path, commit.STAGING_KIND), "new")
    commit.commit(staging, path, RULES)
    assert (path / "data").read_text() == "new" and os.listdir(tmp_path) == ["ckpt"]
    assert steps == ["test-renamed"]


def test_a_commit_replaces_the_old_checkpoint_and_deletes_it(tmp_path, steps, use_exchange):
    path = _checkpoint(tmp_path / "ckpt", "old")
    staging = _checkpoint(leftovers.owned_path(path, commit.STAGING_KIND), "new")
    commit.commit(staging, path, RULES)
    assert (path / "data").read_text() == "new" and os.listdir(tmp_path) == ["ckpt"]
    if use_exchange and steps[0] == "test-exchanged":
        assert steps == ["test-exchanged", "test-previous-removed"]
    else:  # two renames, also where the file system refuses the exchange
        assert steps == ["test-previous-kept", "test-renamed", "test-previous-removed"]


def test_the_steps_carry_the_default_name_without_rules(tmp_path, steps):
    path = tmp_path / "ckpt"
    commit.commit(_checkpoint(leftovers.owned_path(path, commit.STAGING_KIND), "new"), path)
    assert steps == ["folder-renamed"]


def test_exchange_is_refused_when_switched_off(tmp_path, monkeypatch):
    monkeypatch.setattr(commit, "USE_RENAME_EXCHANGE", False)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert commit.exchange(first, second) is False


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")
def test_exchange_swaps_two_folders(tmp_path):
    first, second = _checkpoint(tmp_path / "a", "first"), _checkpoint(tmp_path / "b", "second")
    if not commit.exchange(first, second):
        pytest.skip("this file system has no RENAME_EXCHANGE")
    assert (first / "data").read_text() == "second" and (second / "data").read_text() == "first"


def test_remove_folder_deletes_the_manifest_and_the_files(tmp_path):
    folder = _checkpoint(tmp_path / "old", "old")
    commit.remove_folder(folder)
    assert not folder.exists()


# -- what is complete ----------------------------------------------------------------------------------


def test_a_folder_is_complete_when_every_file_its_manifest_lists_has_its_size(tmp_path):
    folder = _checkpoint(tmp_path / "ckpt", "data", saved=1234.5)
    assert commit.is_complete(folder) and commit.saved_at(folder) == 1234.5
    (folder / "data").write_text("shorter")
    assert not commit.is_complete(folder)


def test_a_folder_without_manifest_is_complete_only_when_the_rules_say_so(tmp_path):
    folder = _checkpoint(tmp_path / "ckpt", "data", manifest=False)
    assert not commit.is_complete(folder) and commit.saved_at(folder) is None
    legacy = commit.Rules(complete_without_manifest=lambda f: (f / "data").is_file())
    assert commit.is_complete(folder, legacy)


# -- locate: which folder a load reads -----------------------------------------------------------------


def test_a_complete_checkpoint_at_the_path_is_read_without_a_warning(tmp_path):
    path = _checkpoint(tmp_path / "ckpt", "old")
    assert commit.locate(path, RULES) == commit.Decision(str(path))


def test_a_file_or_a_folder_that_is_no_checkpoint_is_left_to_the_loader(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    assert commit.locate(tmp_path / "file").source == str(tmp_path / "file")
    assert commit.locate(tmp_path / "folder").source == str(tmp_path / "folder")


def test_a_missing_path_is_an_error_that_names_it(tmp_path):
    decision = commit.locate(tmp_path / "ckpt", RULES)
    assert decision.source is None and f"Checkpoint not found: '{tmp_path / 'ckpt'}'" in decision.error


def test_the_complete_copy_of_a_save_killed_between_its_renames_is_read_with_the_command_to_restore_it(tmp_path):
    path = tmp_path / "ckpt"
    copy = _checkpoint(_owned(path, commit.STAGING_KIND, _dead_pid()), "new")
    decision = commit.locate(path, RULES)
    assert decision.source == str(copy) and decision.error is None
    assert f"mv {shlex.quote(str(copy))} {shlex.quote(str(path))}" in decision.warning


def test_a_newer_complete_copy_of_a_dead_save_wins_over_the_path(tmp_path):
    path = _checkpoint(tmp_path / "ckpt", "old", saved=100.0)
    newer = _checkpoint(_owned(path, commit.STAGING_KIND, _dead_pid()), "new", saved=200.0)
    decision = commit.locate(path, RULES)
    assert decision.source == str(newer) and "later save was interrupted" in decision.warning


def test_copies_of_a_live_process_or_another_host_are_named_not_chosen(tmp_path):
    path = tmp_path / "ckpt"
    live = _checkpoint(_owned(path, commit.STAGING_KIND, os.getpid()), "live")
    elsewhere = _checkpoint(_owned(path, commit.PREVIOUS_KIND, 12345, host="other-node"), "other")
    decision = commit.locate(path, RULES)
    assert decision.source is None and "cannot be decided safely" in decision.error
    assert f"'{live}' (of a save still running on this host" in decision.error
    assert f"'{elsewhere}' (of a save on another host" in decision.error


def test_only_incomplete_folders_beside_a_missing_path_is_an_error_naming_them(tmp_path):
    path = tmp_path / "ckpt"
    incomplete = _owned(path, commit.STAGING_KIND, _dead_pid())
    incomplete.mkdir()
    decision = commit.locate(path, RULES)
    assert decision.source is None and f"only incomplete folders beside it ('{incomplete}'" in decision.error


def test_legacy_folders_are_named_with_their_writer(tmp_path):
    rules = commit.Rules(legacy_suffixes=(".old-partial",), legacy_writer="an older my-plugin")
    path = tmp_path / "ckpt"
    legacy = _checkpoint(tmp_path / ".ckpt.old-partial", "legacy")
    decision = commit.locate(path, rules)
    assert decision.source is None and f"'{legacy}' (left by an interrupted save of an older my-plugin" in (
        decision.error
    )
    assert commit.locate(path, RULES).error.startswith(f"Checkpoint not found: '{path}'. Check the path")


# -- recover: before the next save ---------------------------------------------------------------------


def test_recover_puts_the_newest_complete_copy_in_place_and_removes_dead_leftovers(tmp_path, steps):
    path = tmp_path / "ckpt"
    older = _checkpoint(_owned(path, commit.PREVIOUS_KIND, _dead_pid()), "old", saved=100.0)
    _checkpoint(_owned(path, commit.STAGING_KIND, _dead_pid()), "new", saved=200.0)
    live = _owned(path, commit.STAGING_KIND, os.getpid())
    live.mkdir()
    removed = commit.recover(path, RULES)
    assert (path / "data").read_text() == "new" and removed == [older]
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt", live.name])
    assert steps == ["test-renamed"]


# -- a save, start to end ------------------------------------------------------------------------------


def test_create_staging_recovers_first_then_makes_an_owned_folder_beside_the_path(tmp_path, steps):
    path = tmp_path / "new-parent" / "ckpt"
    path.parent.mkdir()
    dead = _owned(path, commit.STAGING_KIND, _dead_pid())
    dead.mkdir()
    staging = commit.create_staging(path, RULES)
    assert staging.is_dir() and not dead.exists()
    assert leftovers.owner_of(staging, path) == (commit.STAGING_KIND, leftovers.host_id(), os.getpid())
    assert steps == ["test-staging-created"]


def test_create_staging_makes_the_parent_folders(tmp_path):
    staging = commit.create_staging(tmp_path / "a" / "b" / "ckpt")
    assert staging.parent == tmp_path / "a" / "b" and staging.is_dir()


def test_write_manifest_and_commit_records_the_files_and_the_time_then_commits(tmp_path, steps):
    path = tmp_path / "ckpt"
    staging = commit.create_staging(path, RULES)
    (staging / "data").write_text("new")
    before = time.time()
    commit.write_manifest_and_commit(staging, path, {"data": integrity.checksum_file(staging / "data")}, RULES, n=2)
    manifest = integrity.read_manifest(path)
    assert manifest["n"] == 2 and before <= manifest["saved_at"] <= time.time()
    assert integrity.verify_checkpoint(path) == [] and os.listdir(tmp_path) == ["ckpt"]
    assert steps == ["test-staging-created", "test-manifest-written", "test-renamed"]


# -- a process killed after each step ------------------------------------------------------------------

_COMMIT_AND_CRASH = textwrap.dedent(
    """
    import os, sys
    from fabric_core.io import commit, faults, integrity, leftovers

    path, step, how = sys.argv[1:]
    staging = leftovers.owned_path(path, commit.STAGING_KIND)  # owned by this process, which then ends
    staging.mkdir()
    (staging / "data").write_text("new")
    integrity.write_manifest(staging, {{"data": integrity.checksum_file(staging / "data")}}, saved_at=200.0)
    commit.USE_RENAME_EXCHANGE = how == "exchange"
    faults.checkpoint_step = lambda name: os._exit({exit}) if name == step else None
    commit.commit(staging, path, commit.Rules(name="test"))
    os._exit(0)  # the step was never reached
    """
).format(exit=CRASH_EXIT)

CRASHES = [
    ("exchange", "test-exchanged"),
    ("exchange", "test-previous-removed"),
    ("two-renames", "test-previous-kept"),
    ("two-renames", "test-renamed"),
    ("two-renames", "test-previous-removed"),
]


@pytest.mark.parametrize(("how", "step"), CRASHES)
def test_a_commit_killed_after_any_step_leaves_the_new_checkpoint_found_and_recovered(tmp_path, how, step):
    path = _checkpoint(tmp_path / "ckpt", "old", saved=100.0)
    command = [sys.executable, "-c", _COMMIT_AND_CRASH, str(path), step, how]
    crashed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert crashed.returncode in (CRASH_EXIT, 0), crashed.stderr
    if crashed.returncode == 0:
        pytest.skip(f"{step} is not a step here (no RENAME_EXCHANGE on this file system)")
    decision = commit.locate(path, RULES)
    assert decision.source is not None, decision.error
    assert (Path(decision.source) / "data").read_text() == "new"
    commit.recover(path, RULES)
    assert os.listdir(tmp_path) == ["ckpt"] and (path / "data").read_text() == "new"


def test_the_module_imports_without_torch_and_import_fabric_core_leaves_it_out():
    code = (
        "import sys, fabric_core; before = 'fabric_core.io.commit' in sys.modules; import fabric_core.io.commit; "
        "print(before, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
