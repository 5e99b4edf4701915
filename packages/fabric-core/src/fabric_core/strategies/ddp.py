"""DistributedDataParallel: one process per device, gradients averaged in backward."""

from __future__ import annotations

import gc
import inspect
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn import Module
from torch.nn.parallel import DistributedDataParallel

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.precision.precision import Precision
from fabric_core.strategies.parallel import ParallelStrategy
from fabric_core.utilities import distributed as collectives
from fabric_core.utilities import hang_report
from fabric_core.utilities.seed import reset_seed

_START_METHODS = ("popen", "spawn", "fork", "forkserver")
#: How long a rank ending normally waits for the others to end too before it destroys the process group.
EXIT_SYNC_TIMEOUT_S = 5.0
#: How many process groups this process has created (see ``DDPStrategy._store_for_next_group``).
_groups_created = 0


def _ddp_parameter_names() -> set[str]:
    names = set(inspect.signature(DistributedDataParallel.__init__).parameters)
    return names - {"self", "module", "device_ids", "output_device"}


class DDPStrategy(ParallelStrategy):
    """``torch.nn.parallel.DistributedDataParallel`` over one process per device.

    Args:
        process_group_backend: ``"gloo"``, ``"nccl"``, ... (default: the accelerator's).
        timeout: how long any collective may wait for the other ranks before it fails with an error
            naming the rank, the operation, and what every other rank was doing (default 30 minutes).
            ``FABRIC_CHECK_COLLECTIVES=1`` in the environment of every rank also compares each collective's
            operation, shapes and dtypes across ranks before running it (one small extra all_gather per
            collective) and raises ``CollectiveMismatchError`` at the first difference.
        start_method: ``"popen"`` re-runs the script once per extra process (the default, like
            ``torchrun``); ``"spawn"``, ``"fork"`` and ``"forkserver"`` start workers that run the
            function given to ``fabric.launch``.
        **kwargs: passed to ``DistributedDataParallel`` (e.g. ``find_unused_parameters=True``,
            ``gradient_as_bucket_view=True``, ``static_graph=True``).

    Example::

        fabric = Fabric(strategy=DDPStrategy(process_group_backend="gloo", bucket_cap_mb=50), devices=2)
    """

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision: Precision | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = collectives.DEFAULT_TIMEOUT,
        start_method: Literal["popen", "spawn", "fork", "forkserver"] = "popen",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision=precision,
        )
        if start_method not in _START_METHODS:
            raise ValueError(
                f"{type(self).__name__}(start_method={start_method!r}) is not supported: "
                f"expected one of {_START_METHODS}."
            )
        if timeout is not None and not isinstance(timeout, timedelta):
            raise TypeError(
                f"{type(self).__name__}(timeout={timeout!r}) must be a datetime.timedelta, e.g. timedelta(minutes=10)."
            )
        if process_group_backend is not None and not isinstance(process_group_backend, str):
            raise TypeError(f"process_group_backend={process_group_backend!r} must be a string such as 'gloo'.")
        unknown = sorted(set(kwargs) - _ddp_parameter_names())
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got keyword arguments that DistributedDataParallel does not take: {unknown}. "
                f"Valid ones: {sorted(_ddp_parameter_names())}."
            )
        self._process_group_backend = process_group_backend
        self._timeout = timeout
        self._start_method = start_method
        self._ddp_kwargs = kwargs
        self._owns_process_group = False
        # Read here so that a bad value fails at Fabric(...), before any process starts.
        self._check_collectives = collectives.check_collectives_from_environment()

    @property
    def process_group_backend(self) -> str:
        if self._process_group_backend is not None:
            return self._process_group_backend
        if self.accelerator is not None:
            return self.accelerator.default_process_group_backend
        return "gloo"

    @property
    def timeout(self) -> timedelta | None:
        return self._timeout

    @property
    def start_method(self) -> str:
        return self._start_method

    def configure_launcher(self) -> None:
        if self._start_method == "popen":
            if self.cluster_environment is not None and not self.cluster_environment.creates_processes_externally:
                from fabric_core.launchers.subprocess_script import SubprocessScriptLauncher

                self._launcher = SubprocessScriptLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
        else:
            from fabric_core.launchers.multiprocessing import MultiProcessingLauncher

            self._launcher = MultiProcessingLauncher(self, start_method=self._start_method)

    # -- process group -----------------------------------------------------------------------------

    def setup_environment(self) -> None:
        self.set_world_ranks()  # first: setting up the device may report once, from rank 0 only
        super().setup_environment()
        reset_seed()
        self._share_cpu_threads()
        self._init_process_group()

    def _share_cpu_threads(self) -> None:
        # Several CPU processes that each start one thread per core oversubscribe the machine and run
        # slower than fewer threads would; torchrun sets OMP_NUM_THREADS=1 for the same reason. An
        # explicit OMP_NUM_THREADS (or torch.set_num_threads in the script) is left alone.
        if self.root_device.type != "cpu" or self.num_processes < 2 or "OMP_NUM_THREADS" in os.environ:
            return
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.num_processes))

    def _init_process_group(self) -> None:
        collectives.set_check_collectives(self._check_collectives)
        if dist.is_initialized():
            if dist.get_world_size() != self.world_size:
                raise RuntimeError(
                    f"A process group of world size {dist.get_world_size()} already exists, but this run needs "
                    f"{self.world_size} processes. Destroy it first (torch.distributed.destroy_process_group())."
                )
            return
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        kwargs: dict[str, Any] = {}
        if self._timeout is not None:
            kwargs["timeout"] = self._timeout
        try:
            store = self._store_for_next_group(kwargs)
            if store is not None:
                kwargs["store"] = store
            dist.init_process_group(
                self.process_group_backend, rank=self.global_rank, world_size=self.world_size, **kwargs
            )
        except RuntimeError as err:
            raise collectives.DistributedError(
                f"Rank {self.global_rank} of {self.world_size} could not join the process group at "
                f"{env.main_address}:{env.main_port} (backend {self.process_group_backend!r}): {err}"
            ) from err
        self._owns_process_group = True
        global _groups_created
        _groups_created += 1
        # A second client of the group's store, so that a timed-out collective can say what every rank was doing.
        hang_report.start(env.main_address, env.main_port, self.global_rank, self.world_size)

    def _store_for_next_group(self, kwargs: dict[str, Any]) -> Any:
        """The rendezvous store for a process group after the first one this process created, or ``None``.

        Each process group writes its ranks' addresses under the same keys of the store on
        ``MASTER_PORT``; a store server that outlives its group (torch shares one server per port in a
        process) would hand the next group the previous one's addresses. Later groups therefore keep
        their keys apart under a prefix that every rank derives alike, from how many groups it created.
        """
        if _groups_created == 0:
            return None  # the first group: torch's own env:// rendezvous, unchanged
        store, _, _ = next(dist.rendezvous("env://", self.global_rank, self.world_size, **kwargs))
        return dist.PrefixStore(f"fabric-group-{_groups_created}/", store)

    # -- modules -----------------------------------------------------------------------------------

    def setup_module(self, module: Module) -> Module:
        if not any(p.requires_grad for p in module.parameters()):
            return module  # nothing to synchronise (e.g. a frozen teacher); DDP would refuse it
        device_ids = None if self.root_device.type == "cpu" else [self.root_device.index]
        return DistributedDataParallel(module, device_ids=device_ids, **self._ddp_kwargs)

    def no_backward_sync(self, module: Module, enabled: bool) -> AbstractContextManager:
        if not enabled or not isinstance(module, DistributedDataParallel):
            return nullcontext()
        return module.no_sync()

    def get_module_state_dict(self, module: Module) -> dict[str, Any]:
        if isinstance(module, DistributedDataParallel):
            module = module.module
        return module.state_dict()

    def load_module_state_dict(self, module: Module, state_dict: dict[str, Any], strict: bool = True) -> None:
        if isinstance(module, DistributedDataParallel):
            module = module.module
        module.load_state_dict(state_dict, strict=strict)

    # -- collectives -------------------------------------------------------------------------------

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def all_gather(self, tensor: Tensor, group: Any | None = None, sync_grads: bool = False) -> Tensor:
        if not self._distributed() or dist.get_world_size(group) == 1:
            return tensor
        return collectives.all_gather(tensor, group, sync_grads, self._timeout)

    def all_reduce(self, tensor: Tensor, group: Any | None = None, reduce_op: Any | None = "mean") -> Tensor:
        if not isinstance(tensor, Tensor):
            return tensor
        if not self._distributed():
            collectives.resolve_reduce_op(reduce_op)
            return tensor
        return collectives.all_reduce(tensor, group, reduce_op, self._timeout)

    def barrier(self, name: str | None = None) -> None:
        if not self._distributed():
            return
        device_ids = [self.root_device.index] if self.process_group_backend == "nccl" else None
        collectives.barrier(name, device_ids, self._timeout)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if not self._distributed():
            return obj
        return collectives.broadcast_object(obj, src, None, self._timeout)

    # -- the end -----------------------------------------------------------------------------------

    def teardown(self) -> None:
        # gloo can abort a process at exit when a DDP reducer outlives its process group: collect the
        # (already released) wrappers before destroying the group.
        gc.collect()
        if self._owns_process_group and dist.is_initialized() and not _ending_in_failure():
            hang_report.leave_together(EXIT_SYNC_TIMEOUT_S)
        if self._owns_process_group:
            hang_report.stop()
        if self._owns_process_group and dist.is_initialized():
            self._destroy_process_group()
        self._owns_process_group = False
        super().teardown()

    def _destroy_process_group(self) -> None:
        """Destroy the process group this strategy created (a subclass whose backend library caches groups
        releases them here too)."""
        dist.destroy_process_group()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(start_method={self._start_method!r}, backend={self.process_group_backend!r}, "
            f"num_processes={self.num_processes}, num_nodes={self.num_nodes})"
        )


def _ending_in_failure() -> bool:
    """Whether the process is ending with an error (then it must not wait for ranks that may never come)."""
    from fabric_core.fabric import _is_failure, _uncaught_exception

    return _is_failure(sys.exc_info()[1]) or _is_failure(_uncaught_exception())
