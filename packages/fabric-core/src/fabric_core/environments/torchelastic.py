"""The environment of processes started by ``torchrun`` (TorchElastic)."""

from __future__ import annotations

import logging
import os

from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.environments.local import required_int_from_env

log = logging.getLogger(__name__)

# torchrun exports all of these to every worker; a hand-made launcher rarely sets GROUP_RANK and
# LOCAL_WORLD_SIZE, which keeps detection from firing on Fabric's own launcher or on Kubeflow.
_REQUIRED = ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


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

    with ``Fabric(devices=4, num_nodes=2)`` in ``train.py``. ``RANK``, ``LOCAL_RANK``, ``GROUP_RANK``
    (the node rank), ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` are read
    on every call, so a restart by the elastic agent is seen without building a new environment.
    """

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        # torchrun always exports it; the fallback only serves hand-made single-node launchers.
        return os.environ.get("MASTER_ADDR") or "127.0.0.1"

    @property
    def main_port(self) -> int:
        return _torchrun_int("MASTER_PORT")

    @staticmethod
    def detect() -> bool:
        return all(name in os.environ for name in _REQUIRED)

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
        return _torchrun_int("GROUP_RANK")

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise ``ValueError`` when ``devices``/``num_nodes`` differ from the processes torchrun started."""
        per_node = _torchrun_int("LOCAL_WORLD_SIZE")
        if per_node != num_devices:
            raise ValueError(
                f"torchrun started {per_node} processes per node but Fabric(devices={num_devices}): "
                f"set devices={per_node} or --nproc-per-node={num_devices}."
            )
        world_size = self.world_size()
        if world_size != num_devices * num_nodes:
            # The per-node counts agree, so the node counts must differ.
            nodes = world_size // per_node if per_node else world_size
            raise ValueError(
                f"torchrun started {world_size} processes in all (WORLD_SIZE) but "
                f"Fabric(devices={num_devices}, num_nodes={num_nodes}) expects {num_devices * num_nodes}: "
                f"set num_nodes={nodes} or --nnodes={num_nodes}."
            )
