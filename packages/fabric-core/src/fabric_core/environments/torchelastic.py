"""The environment of processes started by ``torchrun`` (TorchElastic)."""

from __future__ import annotations

import logging
import os

from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.environments.local import _int_from_env, required_int_from_env
from fabric_core.utilities.rank_zero import rank_zero_warn

log = logging.getLogger(__name__)

# What a worker falls back to when a hand-made launcher left the rendezvous variables out.
_DEFAULT_ADDRESS = "127.0.0.1"
_DEFAULT_PORT = 12910


def _torchrun_int(name: str) -> int:
    return required_int_from_env(
        name,
        "TorchElasticEnvironment",
        "Start the script with `torchrun` (or `python -m torch.distributed.run`), which sets it.",
    )


class TorchElasticEnvironment(ClusterEnvironment):
    """``torchrun`` started one process per device; everything is read from the variables it exports.

    Use::

        torchrun --nnodes=2 --nproc-per-node=4 --rdzv-endpoint=host:29400 train.py

    with ``Fabric(devices=4, num_nodes=2)`` in ``train.py``. Detected, as by
    ``torch.distributed.is_torchelastic_launched()``, when ``TORCHELASTIC_RUN_ID`` is set. ``RANK``,
    ``LOCAL_RANK``, ``WORLD_SIZE`` (a ``KeyError`` when missing), ``GROUP_RANK`` (the node rank, 0 when
    missing), ``MASTER_ADDR`` and ``MASTER_PORT`` (``127.0.0.1`` and 12910, with a warning, when missing)
    are read on every call, so a restart by the elastic agent is seen without building a new environment.
    """

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        address = os.environ.get("MASTER_ADDR")
        if not address:
            rank_zero_warn(
                f"MASTER_ADDR is not set; TorchElasticEnvironment uses {_DEFAULT_ADDRESS}. torchrun sets it: "
                "set it yourself when starting the processes another way."
            )
            return _DEFAULT_ADDRESS
        return address

    @property
    def main_port(self) -> int:
        if not os.environ.get("MASTER_PORT"):
            rank_zero_warn(
                f"MASTER_PORT is not set; TorchElasticEnvironment uses {_DEFAULT_PORT}. torchrun sets it: "
                "set it yourself when starting the processes another way."
            )
            return _DEFAULT_PORT
        return _int_from_env("MASTER_PORT")

    @staticmethod
    def detect() -> bool:
        # torchrun names every run with TORCHELASTIC_RUN_ID; hand-made launchers that export RANK and
        # LOCAL_RANK do not, and are left to the local environment.
        if "TORCHELASTIC_RUN_ID" not in os.environ:
            return False
        import torch.distributed

        return torch.distributed.is_available()

    def world_size(self) -> int:
        return _torchrun_int("WORLD_SIZE")

    def set_world_size(self, size: int) -> None:
        if size != self.world_size():
            log.debug(
                "TorchElasticEnvironment.set_world_size(%d) ignored: torchrun fixed WORLD_SIZE=%d.",
                size,
                self.world_size(),
            )

    def global_rank(self) -> int:
        return _torchrun_int("RANK")

    def set_global_rank(self, rank: int) -> None:
        if rank != self.global_rank():
            log.debug(
                "TorchElasticEnvironment.set_global_rank(%d) ignored: torchrun fixed RANK=%d.",
                rank,
                self.global_rank(),
            )

    def local_rank(self) -> int:
        return _torchrun_int("LOCAL_RANK")

    def node_rank(self) -> int:
        return _int_from_env("GROUP_RANK")

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise ``ValueError`` when ``devices * num_nodes`` differs from the ``WORLD_SIZE`` torchrun started."""
        world_size = self.world_size()
        if world_size == num_devices * num_nodes:
            return
        per_node = _int_from_env("LOCAL_WORLD_SIZE", default=0)
        if per_node and world_size % per_node == 0:
            fix = f"set devices={per_node}, num_nodes={world_size // per_node} (torchrun's per-node and node counts)"
        else:
            fix = f"set devices and num_nodes so that devices * num_nodes == {world_size}"
        raise ValueError(
            f"torchrun started {world_size} processes (WORLD_SIZE={world_size}) but Fabric(devices={num_devices}, "
            f"num_nodes={num_nodes}) expects {num_devices * num_nodes}: {fix}, or start torchrun with "
            f"--nproc-per-node={num_devices} --nnodes={num_nodes}."
        )
