"""The environment of processes started by an MPI launcher (``mpirun``, ``mpiexec``), read through mpi4py."""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
from typing import Any

from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.environments.local import _standalone_or_free_port

log = logging.getLogger(__name__)

# Variables that MPI launchers export to the processes they start: Open MPI, PMI (MPICH, Intel MPI,
# Slurm's PMI2), PMIx, MPICH's Hydra and MVAPICH2. Seeing none of them means no MPI launcher, and
# saves importing mpi4py, whose import initialises MPI.
_LAUNCHER_VARIABLES = (
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "PMI_SIZE",
    "PMI_RANK",
    "PMIX_RANK",
    "MPI_LOCALNRANKS",
    "MPI_LOCALRANKID",
    "MV2_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_RANK",
)


def _mpi4py_available() -> bool:
    if sys.modules.get("mpi4py") is not None:
        return True
    try:
        return importlib.util.find_spec("mpi4py") is not None
    except (ImportError, ValueError):
        return False


def _comm_world() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(
            f"mpi4py is installed but failed to import ({err}); MPIEnvironment needs it working. "
            "Reinstall it against this machine's MPI: pip install --no-binary mpi4py mpi4py",
            name=err.name,
        ) from err
    return MPI.COMM_WORLD


class MPIEnvironment(ClusterEnvironment):
    """An MPI launcher started one process per device; ranks and hosts come from mpi4py's ``COMM_WORLD``.

    Use::

        mpirun -n 8 -N 4 python train.py   # with Fabric(devices=4, num_nodes=2)

    Needs ``pip install mpi4py`` (a ``ModuleNotFoundError`` without it). Rank 0's host name is the main
    address and rank 0 picks a free port (or takes ``STANDALONE_PORT``); both are broadcast, so the
    first access to :attr:`main_address`, :attr:`main_port`, :meth:`local_rank` or :meth:`node_rank` is
    a collective call that every process must make. Results are cached. Nodes are numbered in the
    order of their lowest rank, so rank 0 is on node 0 (Lightning numbers them by sorted host name).
    """

    def __init__(self) -> None:
        if not _mpi4py_available():
            raise ModuleNotFoundError(
                "MPIEnvironment reads ranks and hosts through mpi4py, which is not installed: pip install mpi4py",
                name="mpi4py",
            )
        self._comm = _comm_world()
        self._local_rank: int | None = None
        self._node_rank: int | None = None
        self._main_address: str | None = None
        self._main_port: int | None = None

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        if self._main_address is None:
            self._main_address = self._comm.bcast(socket.gethostname(), root=0)
        return self._main_address

    @property
    def main_port(self) -> int:
        if self._main_port is None:
            port = _standalone_or_free_port() if self._comm.Get_rank() == 0 else None
            self._main_port = self._comm.bcast(port, root=0)
        return self._main_port

    @staticmethod
    def detect() -> bool:
        if not any(name in os.environ for name in _LAUNCHER_VARIABLES):
            return False
        if not _mpi4py_available():
            return False
        return _comm_world().Get_size() > 1

    def world_size(self) -> int:
        return self._comm.Get_size()

    def set_world_size(self, size: int) -> None:
        if size != self.world_size():
            log.debug("MPIEnvironment.set_world_size(%d) ignored: the launcher fixed the world size.", size)

    def global_rank(self) -> int:
        return self._comm.Get_rank()

    def set_global_rank(self, rank: int) -> None:
        if rank != self.global_rank():
            log.debug("MPIEnvironment.set_global_rank(%d) ignored: the MPI launcher fixed the rank.", rank)

    def local_rank(self) -> int:
        return self._location()[1]

    def node_rank(self) -> int:
        return self._location()[0]

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise ``ValueError`` when ``devices * num_nodes`` differs from the number of MPI processes."""
        world_size = self.world_size()
        if world_size != num_devices * num_nodes:
            raise ValueError(
                f"The MPI launcher started {world_size} processes but Fabric(devices={num_devices}, "
                f"num_nodes={num_nodes}) expects {num_devices * num_nodes}: start "
                f"{num_devices * num_nodes} processes ({num_devices} per node), or set devices and num_nodes "
                f"so that their product is {world_size}."
            )

    def _location(self) -> tuple[int, int]:
        """``(node_rank, local_rank)``, found with one collective call the first time."""
        if self._node_rank is None or self._local_rank is None:
            # One allgather of host names gives both numbers: the node is the host's position among the
            # distinct hosts by first rank, the local rank counts the lower ranks on the same host.
            hostnames = self._comm.allgather(socket.gethostname())
            rank = self._comm.Get_rank()
            mine = hostnames[rank]
            self._node_rank = list(dict.fromkeys(hostnames)).index(mine)
            self._local_rank = hostnames[:rank].count(mine)
        return self._node_rank, self._local_rank
