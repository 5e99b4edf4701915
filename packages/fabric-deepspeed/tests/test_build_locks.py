"""A stale extension-build lock (a run killed while DeepSpeed compiled an operator) is reported, not waited on."""

from __future__ import annotations

import os
import time

import pytest

from fabric_deepspeed.build_locks import SHARED_BUILD_GRACE_S, check_build_locks, stale_locks


def test_a_lock_no_process_holds_is_stale(tmp_path):
    (tmp_path / "cpu_adam").mkdir()
    (tmp_path / "cpu_adam" / "lock").touch()
    assert stale_locks(tmp_path) == [tmp_path / "cpu_adam" / "lock"]


def test_a_lock_a_live_build_holds_open_is_not_stale(tmp_path):
    (tmp_path / "cpu_adam").mkdir()
    descriptor = os.open(tmp_path / "cpu_adam" / "lock", os.O_CREAT | os.O_EXCL)  # as torch's FileBaton holds it
    try:
        assert stale_locks(tmp_path) == []
    finally:
        os.close(descriptor)
    assert stale_locks(tmp_path) == [tmp_path / "cpu_adam" / "lock"]


def test_on_several_nodes_a_recent_lock_may_be_another_nodes_build(tmp_path):
    (tmp_path / "async_io").mkdir()
    lock = tmp_path / "async_io" / "lock"
    lock.touch()
    assert stale_locks(tmp_path, shared=True) == []
    later = time.time() + SHARED_BUILD_GRACE_S + 1
    assert stale_locks(tmp_path, shared=True, now=later) == [lock]


def test_the_error_names_the_lock_and_the_command_that_removes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    (tmp_path / "cpu_adam").mkdir()
    (tmp_path / "cpu_adam" / "lock").touch()
    with pytest.raises(RuntimeError, match=rf"would wait for the lock forever.*rm {tmp_path / 'cpu_adam' / 'lock'}"):
        check_build_locks()


def test_no_build_folder_is_no_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "never-created"))
    check_build_locks()
