"""Cluster environments: where each process of a run sits and how the processes find rank 0.

``Fabric(...)`` picks the first registered environment whose ``detect()`` holds (torchrun ahead of
Slurm, then LSF and MPI) and falls back to :class:`LocalEnvironment`. Kubeflow, as in Lightning, is
never detected: pass it, or any other, explicitly, e.g.
``Fabric(plugins=[SLURMEnvironment(auto_requeue=False)])``.

Every module here imports only the standard library (and fabric-core's rank-zero and warning helpers,
which do too); mpi4py is imported when MPI is detected or used, torch when torchrun is detected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.environments.cluster_environment import ClusterEnvironment
    from fabric_core.environments.kubeflow import KubeflowEnvironment
    from fabric_core.environments.local import LightningEnvironment, LocalEnvironment, find_free_port
    from fabric_core.environments.lsf import LSFEnvironment
    from fabric_core.environments.mpi import MPIEnvironment
    from fabric_core.environments.slurm import SLURMEnvironment
    from fabric_core.environments.torchelastic import TorchElasticEnvironment

__all__ = [
    "ClusterEnvironment",
    "KubeflowEnvironment",
    "LSFEnvironment",
    "LightningEnvironment",
    "LocalEnvironment",
    "MPIEnvironment",
    "SLURMEnvironment",
    "TorchElasticEnvironment",
    "find_free_port",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ClusterEnvironment": "fabric_core.environments.cluster_environment",
        "KubeflowEnvironment": "fabric_core.environments.kubeflow",
        "LSFEnvironment": "fabric_core.environments.lsf",
        "LightningEnvironment": "fabric_core.environments.local",
        "LocalEnvironment": "fabric_core.environments.local",
        "MPIEnvironment": "fabric_core.environments.mpi",
        "SLURMEnvironment": "fabric_core.environments.slurm",
        "TorchElasticEnvironment": "fabric_core.environments.torchelastic",
        "find_free_port": "fabric_core.environments.local",
    },
)
