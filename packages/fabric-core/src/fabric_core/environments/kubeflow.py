"""The environment of a Kubeflow PyTorchJob: one pod per process, one process per pod."""

from __future__ import annotations

import logging
import os

from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.environments.local import EnvironmentKeyError, _int_from_env

log = logging.getLogger(__name__)


def _kubeflow_variable(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise EnvironmentKeyError(
            f"Environment variable {name} is not set, but KubeflowEnvironment reads it. Run the script as a "
            "replica of a Kubeflow PyTorchJob, whose operator sets it in every pod."
        )
    return value


def _kubeflow_int(name: str) -> int:
    _kubeflow_variable(name)
    return _int_from_env(name)


class KubeflowEnvironment(ClusterEnvironment):
    """The Kubeflow training operator started one pod per process and exported the rendezvous variables.

    Each pod is a node with one device, so ``RANK`` is both the global rank and the node rank and the
    local rank is always 0. As in Lightning, it is never detected automatically: a pod's variables
    look the same whether it runs one process per pod or starts its own, so pass it yourself::

        fabric = Fabric(devices=1, num_nodes=replicas, plugins=[KubeflowEnvironment()])

    A missing variable is a ``KeyError``. (A PyTorchJob that runs ``torchrun`` in each pod is detected
    as a TorchElastic run.)
    """

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return _kubeflow_variable("MASTER_ADDR")

    @property
    def main_port(self) -> int:
        return _kubeflow_int("MASTER_PORT")

    @staticmethod
    def detect() -> bool:
        """Always ``False``: pass ``plugins=[KubeflowEnvironment()]`` to use it.

        Detecting it from ``MASTER_ADDR``, ``WORLD_SIZE`` and ``RANK`` would take over pods that start
        several processes themselves, or that each train on their own.
        """
        return False

    def world_size(self) -> int:
        return _kubeflow_int("WORLD_SIZE")

    def set_world_size(self, size: int) -> None:
        if size != self.world_size():
            log.debug("KubeflowEnvironment.set_world_size(%d) ignored: the job fixed WORLD_SIZE.", size)

    def global_rank(self) -> int:
        return _kubeflow_int("RANK")

    def set_global_rank(self, rank: int) -> None:
        if rank != self.global_rank():
            log.debug("KubeflowEnvironment.set_global_rank(%d) ignored: the PyTorchJob fixed RANK.", rank)

    def local_rank(self) -> int:
        return 0

    def node_rank(self) -> int:
        return self.global_rank()

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise ``ValueError`` unless ``devices=1`` and ``num_nodes`` equals the job's ``WORLD_SIZE``."""
        if num_devices != 1:
            raise ValueError(
                f"A Kubeflow PyTorchJob runs one process per pod but Fabric(devices={num_devices}): "
                "set devices=1 and one replica per device, or start the processes of each pod with torchrun."
            )
        world_size = self.world_size()
        if world_size != num_nodes:
            raise ValueError(
                f"The PyTorchJob has {world_size} replicas (WORLD_SIZE={world_size}) but "
                f"Fabric(num_nodes={num_nodes}): set num_nodes={world_size} or run {num_nodes} replicas."
            )
