"""A strategy subclass sees its own process's ranks in every hook it overrides, and names itself in repr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fabric_core import Fabric
from fabric_core.environments.local import LocalEnvironment
from fabric_core.strategies import DDPStrategy, SingleDeviceStrategy

SCRIPTS = Path(__file__).parent / "scripts"
TIMEOUT = 120
HOOKS_IN_EVERY_RANK = {
    "setup_environment before super()",
    "setup_environment after super()",
    "module_to_device",
    "setup_module",
    "setup_optimizer",
    "all_reduce",
    "barrier",
    "teardown",
}


def _run_ranks(mode: str, out: Path, free_port: int) -> dict[int, list[dict]]:
    """Run scripts/ddp_hook_ranks.py on 2 processes; return each process's records by its pid."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "MASTER_", "LOCAL_RANK", "RANK"))}
    env["FABRIC_STRICT_PLUGINS"] = "1"
    script = [str(SCRIPTS / "ddp_hook_ranks.py"), mode, str(out)]
    if mode == "torchrun":
        script = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port), *script]
    result = subprocess.run([sys.executable, *script], capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return {int(path.stem): json.loads(path.read_text()) for path in out.glob("*.json")}


def _ranks(record: dict) -> tuple:
    return tuple(record[key] for key in ("global_rank", "local_rank", "node_rank", "world_size", "is_global_zero"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["popen", "spawn", "fork", "torchrun"])
def test_a_ddp_subclass_sees_its_process_ranks_in_every_hook(mode, tmp_path, free_port):
    records = _run_ranks(mode, tmp_path, free_port)

    assert len(records) == 2, f"expected one record per rank, got {sorted(records)}"
    global_ranks = set()
    for pid, seen in records.items():
        own = [record for record in seen if record["pid"] == pid]
        assert {record["hook"] for record in own} >= HOOKS_IN_EVERY_RANK
        rank = own[-1]["global_rank"]
        global_ranks.add(rank)
        expected = (rank, rank, 0, 2, rank == 0)
        wrong = [(record["hook"], _ranks(record)) for record in own if _ranks(record) != expected]
        assert not wrong, f"{mode}: the process of rank {rank} saw other ranks in {wrong}"
    assert global_ranks == {0, 1}
    # Under spawn and fork the launching process configures the launcher (and is no rank itself).
    launcher_records = [
        record for seen in records.values() for record in seen if record["hook"] == "configure_launcher"
    ]
    assert launcher_records and {record["world_size"] for record in launcher_records} == {2}


def _connected_ddp(monkeypatch, local_rank: str | None) -> DDPStrategy:
    if local_rank is not None:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    strategy = DDPStrategy()
    strategy.connect(parallel_devices=[torch.device("cpu")] * 2, cluster_environment=LocalEnvironment(), num_nodes=1)
    return strategy


def test_connect_sets_the_global_rank_and_world_size_from_the_environment(monkeypatch):
    strategy = _connected_ddp(monkeypatch, local_rank="1")

    assert (strategy.global_rank, strategy.local_rank, strategy.world_size) == (1, 1, 2)
    assert not strategy.is_global_zero


def test_set_local_rank_updates_the_global_rank_of_a_started_worker(monkeypatch):
    strategy = _connected_ddp(monkeypatch, local_rank=None)

    strategy.set_local_rank(1)

    assert (strategy.global_rank, strategy.local_rank, strategy.world_size) == (1, 1, 2)


def test_more_nodes_update_the_world_size(monkeypatch):
    monkeypatch.setenv("NODE_RANK", "1")
    strategy = _connected_ddp(monkeypatch, local_rank="0")

    strategy.num_nodes = 2

    assert (strategy.global_rank, strategy.world_size) == (2, 4)


def test_fabric_on_a_started_rank_knows_its_rank_before_launch(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")

    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")

    assert (fabric.global_rank, fabric.world_size, fabric.is_global_zero) == (1, 2, False)


class MyDDP(DDPStrategy):
    pass


class MySingleDevice(SingleDeviceStrategy):
    pass


@pytest.mark.parametrize(
    ("strategy", "name"),
    [(MyDDP(), "MyDDP"), (DDPStrategy(), "DDPStrategy"), (MySingleDevice("cpu"), "MySingleDevice")],
)
def test_repr_names_the_concrete_class(strategy, name):
    assert repr(strategy).startswith(f"{name}(")
