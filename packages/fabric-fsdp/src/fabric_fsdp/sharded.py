"""What FSDP and model-parallel training share: DTensor parameters spread over a ``DeviceMesh``.

``ShardedStrategy`` is DDP's process handling (process group, launcher, bounded collectives, teardown)
with the model handled differently: a subclass says how to build the device mesh and how to
parallelise a module on it; this class does the rest the same way for both — pointing optimizers at the
new parameters, materialising models created on the meta device, skipping gradient synchronisation,
clipping by the norm over all shards, and saving and loading checkpoints.
"""

from __future__ import annotations

import weakref
from abc import abstractmethod
from collections.abc import Generator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.optim import Optimizer

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.io import commit as folder_commit
from fabric_core.io.checkpoint_io import CheckpointIO
from fabric_core.precision.precision import Precision
from fabric_core.strategies.ddp import DDPStrategy
from fabric_core.utilities import distributed as collectives
from fabric_core.utilities.rank_zero import rank_zero_warn
from fabric_fsdp import checkpoint
from fabric_fsdp.commit import SHARDED
from fabric_fsdp.optimizers import ParameterReplacements, check_no_state, parameter_names
from fabric_fsdp.precision import PRECISIONS, FSDPPrecision


def has_meta_tensors(module: Module) -> bool:
    """Whether a parameter or buffer of ``module`` is on the meta device (``init_module(empty_init=True)``)."""
    return any(t.is_meta for t in (*module.parameters(), *module.buffers()))


class ShardedStrategy(DDPStrategy):
    """Base of :class:`~fabric_fsdp.FSDPStrategy` and :class:`~fabric_fsdp.ModelParallelStrategy`.

    Subclasses implement :meth:`_create_device_mesh` and :meth:`_parallelize`.
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
        start_method: str = "popen",
    ) -> None:
        # DDPStrategy validates start_method and timeout, naming this class in its errors.
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision=precision,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,  # type: ignore[arg-type]
        )
        self._device_mesh: Any | None = None
        self._replacements = ParameterReplacements()
        self._modules: weakref.WeakSet[Module] = weakref.WeakSet()

    # -- resolution --------------------------------------------------------------------------------

    def precision_for(self, name: str) -> Precision | None:
        """The five precisions of sharded training are :class:`FSDPPrecision`; other names keep core's plugin."""
        return FSDPPrecision(name) if name in PRECISIONS else None  # type: ignore[arg-type]

    def connect(self, *, accelerator: Accelerator | None = None, **resolved: Any) -> None:
        super().connect(accelerator=accelerator, **resolved)
        self._check_precision(self.precision)
        if isinstance(self.precision, FSDPPrecision) and self.precision.device is None and self.accelerator is not None:
            self.precision.device = self.accelerator.device_type or None

    def _check_precision(self, precision: Precision) -> None:
        from fabric_core.precision.double import DoublePrecision
        from fabric_core.precision.half import HalfPrecision

        if isinstance(precision, FSDPPrecision) or type(precision) in (Precision, DoublePrecision, HalfPrecision):
            return
        raise TypeError(
            f"{type(self).__name__} cannot train with {precision!r}: sharded training needs FSDPPrecision, whose "
            "loss scaler and mixed-precision policy work on sharded parameters. Pass the precision by name, e.g. "
            "Fabric(precision='bf16-mixed'), or pass fabric_fsdp.FSDPPrecision('bf16-mixed')."
        )

    # -- the device mesh ---------------------------------------------------------------------------

    @property
    def device_mesh(self) -> Any:
        """The ``DeviceMesh`` the model is spread over; it exists once the processes are launched."""
        if self._device_mesh is None:
            raise RuntimeError(
                f"{type(self).__name__}.device_mesh is created when the processes join the process group: call "
                "fabric.launch() first (or start the script with `fabric run`)."
            )
        return self._device_mesh

    @abstractmethod
    def _create_device_mesh(self) -> Any:
        """Build the ``DeviceMesh`` once the process group exists."""

    @abstractmethod
    def _parallelize(self, module: Module) -> Module:
        """Spread ``module`` over :attr:`device_mesh` (e.g. ``fully_shard``); returns the module to train."""

    def setup_environment(self) -> None:
        super().setup_environment()
        if self._device_mesh is None:
            self._device_mesh = self._create_device_mesh()

    # -- models and optimizers ---------------------------------------------------------------------

    def setup_module_and_optimizers(
        self, module: Module, optimizers: list[Optimizer], scheduler: Any | None = None
    ) -> tuple[Module, list[Optimizer], Any | None]:
        """Shard the module, then point each optimizer at the sharded parameters (hyperparameters kept)."""
        for optimizer in optimizers:
            check_no_state(optimizer, "fabric.setup()")  # before the model is touched
        module = self.setup_module(module)
        return module, [self.setup_optimizer(o) for o in optimizers], scheduler

    def setup_module(self, module: Module) -> Module:
        before = parameter_names(module)
        module = self._parallelize(module)
        if not isinstance(module, Module):
            raise TypeError(
                f"{type(self).__name__}: parallelising the model returned {type(module).__name__}, not a "
                "torch.nn.Module. A parallelize_fn must return the model."
            )
        self._replacements.record(before, module)
        if has_meta_tensors(module):
            self._materialize(module)
        self._modules.add(module)
        return module

    def setup_optimizer(self, optimizer: Optimizer) -> Optimizer:
        """Point an optimizer created before :meth:`setup_module` at the sharded parameters."""
        return self._replacements.repoint(optimizer, "fabric.setup_optimizers()")

    def module_to_device(self, module: Module) -> None:
        if has_meta_tensors(module):
            return  # materialised on the device, shard by shard, when it is set up
        super().module_to_device(module)

    def module_init_context(self, empty_init: bool | None = None) -> AbstractContextManager:
        """With ``empty_init=True``, create the model on the meta device: no memory until it is sharded."""
        if not empty_init:
            return super().module_init_context(empty_init)
        stack = ExitStack()
        stack.enter_context(torch.device("meta"))
        stack.enter_context(self.precision.module_init_context())
        return stack

    @property
    def _materialize_device(self) -> torch.device:
        return self.root_device

    def _materialize(self, module: Module) -> None:
        """Give a sharded model created on the meta device memory for its own shards, then initialise them.

        Each submodule with a ``reset_parameters()`` method initialises its own parameters and buffers
        there; tensors of submodules without one are left uninitialised (load a checkpoint into them).
        """
        module.to_empty(device=self._materialize_device)
        uninitialised = []
        with torch.no_grad(), self._initialization_seed():
            for name, submodule in module.named_modules():
                reset = getattr(submodule, "reset_parameters", None)
                if callable(reset):
                    reset()
                elif any(True for _ in (*submodule.parameters(recurse=False), *submodule.buffers(recurse=False))):
                    uninitialised.append(name or type(submodule).__name__)
        if uninitialised:
            rank_zero_warn(
                f"The model was created with init_module(empty_init=True) and these submodules have parameters or "
                f"buffers but no reset_parameters() method, so their values are uninitialised memory: {uninitialised}. "
                "Load a checkpoint into the model, or define reset_parameters() on them.",
                stacklevel=4,
            )

    def _initialization_seed(self) -> AbstractContextManager:
        """The random state :meth:`_materialize` initialises shards under (subclasses may vary it per shard)."""
        return nullcontext()

    # -- the training step -------------------------------------------------------------------------

    def no_backward_sync(self, module: Module, enabled: bool) -> AbstractContextManager:
        """Accumulate gradients locally, unsharded, until a backward outside the block reduces them."""
        from torch.distributed.fsdp import FSDPModule

        sharded = [m for m in module.modules() if isinstance(m, FSDPModule)]
        if not enabled or not sharded:
            return nullcontext()
        return _without_gradient_sync(sharded)

    def clip_grad_norm(
        self, parameters: list[Tensor], max_norm: float, norm_type: float, error_if_nonfinite: bool
    ) -> Tensor:
        """Clip by the total norm over every shard; returns that norm, a plain tensor equal on every rank."""
        from fabric_fsdp.clipping import clip_grad_norm

        return clip_grad_norm(parameters, max_norm, norm_type, error_if_nonfinite)

    # -- checkpoints -------------------------------------------------------------------------------

    @property
    def _full_checkpoints(self) -> bool:
        """Whether ``fabric.save`` writes one full file (else a sharded directory)."""
        return False

    def save_checkpoint(
        self,
        path: str | Path,
        state: dict[str, Any],
        storage_options: Any | None = None,
        filter: checkpoint.Filter | None = None,
    ) -> None:
        """Write a sharded checkpoint directory, or one full file; every rank must call it."""
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint takes no storage_options (got {storage_options!r})."
            )
        if self._full_checkpoints:
            checkpoint.save_full(path, state, filter, list(self._modules), self.is_global_zero, self.checkpoint_io)
        else:
            checkpoint.save_sharded(
                path, state, filter, list(self._modules), self.is_global_zero, self.broadcast, self._all_gather_objects
            )

    def load_checkpoint(
        self,
        path: str | Path,
        state: Module | Optimizer | dict[str, Any] | None = None,
        strict: bool = True,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Restore ``state`` from a sharded directory (any process count) or a full file; every rank calls it.

        ``weights_only`` applies to full checkpoint files (``None``: the checkpoint IO's own setting); a
        sharded directory holds tensors and the small metadata this strategy wrote itself.
        """
        path = self._checkpoint_to_read(Path(path))
        sharded = checkpoint.is_sharded_checkpoint(path)
        if path.is_dir() and not sharded:
            raise ValueError(
                f"'{path}' is a directory but not a sharded checkpoint (it has no {checkpoint.DCP_METADATA} file): "
                "pass the directory fabric.save wrote, or a checkpoint file."
            )
        if isinstance(state, Optimizer):
            raise TypeError(
                f"{type(self).__name__} loads a sharded optimizer's state together with its model: use "
                "fabric.load(path, {'model': model, 'optimizer': optimizer}) instead of fabric.load_raw."
            )
        if isinstance(state, Module):
            if sharded:
                raise ValueError(
                    f"fabric.load_raw reads a plain state dict file, but '{path}' is a sharded checkpoint directory: "
                    "use fabric.load(path, {'model': model}), or `fabric consolidate` it into a file first."
                )
            checkpoint.load_full_model(state, checkpoint.read_file(path, self.checkpoint_io, weights_only), strict)
            return {}
        modules = list(self._modules)
        if state is None:
            if sharded:
                return checkpoint.read_sharded(path)
            return checkpoint.read_file(path, self.checkpoint_io, weights_only)
        if sharded:
            return checkpoint.load_sharded(path, state, strict, modules)
        return checkpoint.load_full(path, state, strict, modules, self.checkpoint_io, weights_only)

    def _checkpoint_to_read(self, path: Path) -> Path:
        """Where to load ``path`` from: itself, or the newest complete copy an interrupted save left beside it.

        Rank 0 decides (whether a save's owner still runs is known on its host only) and tells every rank.
        """
        decision = folder_commit.locate_for_all(path, SHARDED, self.is_global_zero, self.broadcast)
        if decision.warning is not None:
            rank_zero_warn(decision.warning, stacklevel=5)
        return Path(decision.source)

    def _all_gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order; bounded by the strategy's timeout."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return [obj]
        gathered: list[Any] = [None] * dist.get_world_size()
        collectives.run_collective("all_gather_object", self.timeout, dist.all_gather_object, gathered, obj)
        return gathered

    # -- the end -----------------------------------------------------------------------------------

    def teardown(self) -> None:
        self._device_mesh = None
        super().teardown()

    def __getstate__(self) -> dict[str, Any]:
        # Spawned workers receive the strategy by pickling, before any model exists: weak references and
        # the device mesh (created in each worker) stay behind.
        state = self.__dict__.copy()
        state.update(_device_mesh=None, _replacements=None, _modules=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._replacements = ParameterReplacements()
        self._modules = weakref.WeakSet()


@contextmanager
def _without_gradient_sync(modules: list[Any]) -> Generator[None, None, None]:
    for module in modules:
        module.set_requires_gradient_sync(False, recurse=False)
    try:
        yield
    finally:
        for module in modules:
            module.set_requires_gradient_sync(True, recurse=False)
