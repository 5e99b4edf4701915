"""The cluster-environment interface: where a process sits in the run and how to reach rank 0."""

from __future__ import annotations

from abc import ABC, abstractmethod


class ClusterEnvironment(ABC):
    """Describes the cluster (or the lack of one) that the processes of a run live in.

    Resolution of ``Fabric(...)`` takes the first registered environment whose :meth:`detect` holds,
    else the local one. A complete plugin::

        import os
        from fabric_core.environments import ClusterEnvironment
        from fabric_core.plugins import hookimpl


        class MyScheduler(ClusterEnvironment):
            @property
            def creates_processes_externally(self) -> bool:
                return True  # the scheduler starts one process per device

            @property
            def main_address(self) -> str:
                return os.environ["MY_MAIN_HOST"]

            @property
            def main_port(self) -> int:
                return int(os.environ["MY_MAIN_PORT"])

            @staticmethod
            def detect() -> bool:
                return "MY_JOB_ID" in os.environ

            def world_size(self) -> int:
                return int(os.environ["MY_WORLD_SIZE"])

            def set_world_size(self, size: int) -> None:
                pass  # fixed by the scheduler

            def global_rank(self) -> int:
                return int(os.environ["MY_RANK"])

            def set_global_rank(self, rank: int) -> None:
                pass

            def local_rank(self) -> int:
                return int(os.environ["MY_LOCAL_RANK"])

            def node_rank(self) -> int:
                return int(os.environ["MY_NODE_RANK"])


        @hookimpl
        def fabric_register_cluster_environments(registry):
            registry.register("my_scheduler", MyScheduler)
    """

    @property
    @abstractmethod
    def creates_processes_externally(self) -> bool:
        """Whether something outside Fabric (a scheduler, torchrun) starts one process per device."""

    @property
    @abstractmethod
    def main_address(self) -> str:
        """The host name or address of the rank-0 process."""

    @property
    @abstractmethod
    def main_port(self) -> int:
        """The port of the rank-0 process's rendezvous store."""

    @staticmethod
    @abstractmethod
    def detect() -> bool:
        """Whether the current process runs in this environment (cheap: reads environment variables)."""

    @abstractmethod
    def world_size(self) -> int:
        """The total number of processes of the run."""

    @abstractmethod
    def set_world_size(self, size: int) -> None:
        """Record the world size decided by the strategy (ignored where the environment fixes it)."""

    @abstractmethod
    def global_rank(self) -> int:
        """The rank of this process among all processes of the run."""

    @abstractmethod
    def set_global_rank(self, rank: int) -> None:
        """Record the global rank decided by the strategy (ignored where the environment fixes it)."""

    @abstractmethod
    def local_rank(self) -> int:
        """The rank of this process among the processes on its node."""

    @abstractmethod
    def node_rank(self) -> int:
        """The index of this process's node."""

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise ``ValueError`` when ``devices``/``num_nodes`` contradict what the environment was given."""

    def teardown(self) -> None:
        """Undo what the environment changed in this process (e.g. environment variables it set)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
