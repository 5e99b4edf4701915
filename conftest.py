"""Fixtures shared by every test of the monorepo: strict plugins, a clean environment and process group."""

from __future__ import annotations

import os

import pytest

# The repository's own tests treat a broken plugin as an error, never as a warning to skip past.
os.environ.setdefault("FABRIC_STRICT_PLUGINS", "1")

_RUN_ENV = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "LOCAL_WORLD_SIZE",
    "TORCHELASTIC_RUN_ID",
    "FABRIC_CLI_USED",
    "FABRIC_ACCELERATOR",
    "FABRIC_STRATEGY",
    "FABRIC_DEVICES",
    "FABRIC_NUM_NODES",
    "FABRIC_PRECISION",
    "FABRIC_GLOBAL_SEED",
    "FABRIC_SEED_WORKERS",
    "FABRIC_PARENT_PID",
    "FABRIC_CHILD_EXIT_TIMEOUT",
)


@pytest.fixture(autouse=True)
def _clean_run_environment(monkeypatch):
    """Each test starts without launcher/cluster variables and leaves none behind."""
    for name in _RUN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith(("SLURM_", "LSB_", "JSM_", "OMPI_", "PMI_", "PMIX_", "KUBEFLOW_")):
            monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(autouse=True)
def _no_process_group_left():
    """Destroy a default process group a test left behind, so the next test starts clean."""
    yield
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture(autouse=True)
def _restore_rank_zero_state():
    from fabric_core.utilities.rank_zero import rank_zero_state

    rank = rank_zero_state.rank
    yield
    rank_zero_state.rank = rank


@pytest.fixture
def free_port() -> int:
    from fabric_core.environments.local import find_free_port

    return find_free_port()


@pytest.fixture
def without_plugins(monkeypatch):
    """Call with plugin (entry point) names to run the test as if those packages were not installed."""
    from fabric_core.plugins import manager, reset

    real_entry_points = manager._entry_points

    def hide(*names: str) -> None:
        hidden = set(names)
        monkeypatch.setattr(manager, "_entry_points", lambda: [p for p in real_entry_points() if p.name not in hidden])
        reset()

    yield hide
    reset()
