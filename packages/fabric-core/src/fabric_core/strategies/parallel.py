"""Strategies with one process per device, possibly on several nodes."""

from __future__ import annotations

from abc import ABC
from typing import Any

import torch

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.precision.precision import Precision
from fabric_core.strategies.strategy import Strategy


class ParallelStrategy(Strategy, ABC):
    """Base of multi-process strategies: knows the devices of its node, the node count and the cluster.

    Ranks come from the cluster environment; a launcher that starts workers itself (spawn, fork) tells
    each worker its local rank through :meth:`set_local_rank`. The ranks are right as soon as they can
    be known: from :meth:`connect` on (devices and environment known), and in a started worker from
    :meth:`set_local_rank` on, so every hook a subclass overrides (``configure_launcher``,
    ``setup_environment`` before or after ``super()``, ``setup_module``, collectives...) sees the
    ranks of its own process.
    """

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision: Precision | None = None,
    ) -> None:
        super().__init__(accelerator=accelerator, checkpoint_io=checkpoint_io, precision=precision)
        self.parallel_devices = parallel_devices
        self.cluster_environment = cluster_environment
        self._num_nodes = 1
        self._local_rank: int | None = None

    def connect(
        self,
        *,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        num_nodes: int | None = None,
        **resolved: Any,
    ) -> None:
        super().connect(**resolved)
        if self.parallel_devices is None and parallel_devices is not None:
            self.parallel_devices = list(parallel_devices)
        if self.cluster_environment is None and cluster_environment is not None:
            self.cluster_environment = cluster_environment
        if num_nodes is not None:
            self._num_nodes = num_nodes
        self._update_world_ranks()

    @property
    def num_nodes(self) -> int:
        return self._num_nodes

    @num_nodes.setter
    def num_nodes(self, num_nodes: int) -> None:
        self._num_nodes = num_nodes
        self._update_world_ranks()

    @property
    def num_processes(self) -> int:
        """Processes on this node: one per device."""
        return len(self.parallel_devices) if self.parallel_devices is not None else 0

    def set_local_rank(self, rank: int) -> None:
        """Fix this process's local rank (used by launchers that start the workers themselves)."""
        self._local_rank = rank
        self._update_world_ranks()

    def _update_world_ranks(self) -> None:
        # Only once both are known: before that, the global rank and world size cannot be computed.
        if self.cluster_environment is not None and self.parallel_devices is not None:
            self.set_world_ranks()

    @property
    def needs_launch(self) -> bool:
        return True

    @property
    def local_rank(self) -> int:
        if self._local_rank is not None:
            return self._local_rank
        return self.cluster_environment.local_rank() if self.cluster_environment is not None else 0

    @property
    def node_rank(self) -> int:
        return self.cluster_environment.node_rank() if self.cluster_environment is not None else 0

    @property
    def global_rank(self) -> int:
        return self.cluster_environment.global_rank() if self.cluster_environment is not None else 0

    @property
    def world_size(self) -> int:
        return self.cluster_environment.world_size() if self.cluster_environment is not None else 1

    @property
    def root_device(self) -> torch.device:
        if not self.parallel_devices:
            raise RuntimeError(f"{type(self).__name__} has no devices yet: it must be set up through Fabric(...).")
        return self.parallel_devices[self.local_rank]

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        return {"num_replicas": self.num_nodes * self.num_processes, "rank": self.global_rank}

    def set_world_ranks(self) -> None:
        """Tell the cluster environment this process's global rank and the world size.

        Runs whenever what the ranks depend on changes (:meth:`connect`, :meth:`set_local_rank`,
        :attr:`num_nodes`) and again at the start of ``setup_environment``; a subclass that overrides
        it must stay idempotent.
        """
        from fabric_core.utilities.rank_zero import rank_zero_state

        if self.cluster_environment is not None:
            self.cluster_environment.set_global_rank(self.node_rank * self.num_processes + self.local_rank)
            self.cluster_environment.set_world_size(self.num_nodes * self.num_processes)
        rank_zero_state.rank = self.global_rank

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        flag = torch.tensor(int(decision), device=self.root_device)
        total = self.all_reduce(flag, reduce_op="sum")
        return bool(total == self.world_size) if all else bool(total > 0)

    def teardown(self) -> None:
        if self.cluster_environment is not None:
            self.cluster_environment.teardown()
        super().teardown()
