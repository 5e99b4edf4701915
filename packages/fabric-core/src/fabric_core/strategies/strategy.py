"""The strategy interface: how a model, its optimizers and its data are spread over processes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.optim import Optimizer

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.io import errors as checkpoint_errors
from fabric_core.io.checkpoint_io import CheckpointIO, load_with
from fabric_core.launchers.launcher import Launcher
from fabric_core.precision.precision import Precision
from fabric_core.utilities.init import EmptyInit

#: A state that ``fabric.save``/``fabric.load`` treat as an object with a state dict of its own.
_STATEFUL = ("state_dict", "load_state_dict")


class CheckpointKeyError(KeyError, ValueError):
    """A key requested with ``strict=True`` is missing from the checkpoint (a ``KeyError`` and ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def _is_stateful(obj: Any) -> bool:
    return all(callable(getattr(obj, name, None)) for name in _STATEFUL)


def _apply_filter(key: str, filter: dict[str, Callable[[str, Any], bool]], source: Any, target: dict) -> None:
    """Copy ``source`` into ``target[key]``, keeping only the items ``filter[key]`` accepts.

    An entry its filter leaves empty is left out of the checkpoint altogether, as in Lightning.
    """
    if key in filter and isinstance(source, dict):
        keep = filter[key]
        kept = {k: v for k, v in source.items() if keep(k, v)}
        if kept:
            target[key] = kept
    else:
        target[key] = source


class Strategy(ABC):
    """Base class of every strategy. A complete (if trivial) plugin::

        from fabric_core.plugins import hookimpl
        from fabric_core.strategies import SingleDeviceStrategy


        class LoudSingleDevice(SingleDeviceStrategy):
            def setup_module(self, module):
                print("setting up", type(module).__name__)
                return super().setup_module(module)


        @hookimpl
        def fabric_register_strategies(registry):
            registry.register("loud", LoudSingleDevice, description="Single device, but says so")

    ``Fabric(...)`` resolution fills in what the user did not give: :attr:`accelerator`,
    :attr:`precision`, :attr:`checkpoint_io` and, for parallel strategies, the devices, cluster
    environment and node count; then it calls :meth:`configure_launcher`.
    """

    #: Whether ``setup_optimizers`` may be called on its own (DeepSpeed and XLA need ``setup``).
    supports_separate_optimizer_setup: bool = True

    def __init__(
        self,
        accelerator: Accelerator | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision: Precision | None = None,
    ) -> None:
        self._accelerator = accelerator
        self._checkpoint_io = checkpoint_io
        self._precision = precision
        self._launcher: Launcher | None = None

    # -- what resolution fills in ------------------------------------------------------------------

    @property
    def accelerator(self) -> Accelerator | None:
        return self._accelerator

    @accelerator.setter
    def accelerator(self, accelerator: Accelerator) -> None:
        self._accelerator = accelerator

    @property
    def checkpoint_io(self) -> CheckpointIO:
        if self._checkpoint_io is None:
            from fabric_core.io.torch_io import TorchCheckpointIO

            self._checkpoint_io = TorchCheckpointIO()
        return self._checkpoint_io

    @checkpoint_io.setter
    def checkpoint_io(self, io: CheckpointIO) -> None:
        self._checkpoint_io = io

    @property
    def precision(self) -> Precision:
        if self._precision is None:
            self._precision = Precision()
        return self._precision

    @precision.setter
    def precision(self, precision: Precision) -> None:
        self._precision = precision

    def connect(
        self,
        *,
        accelerator: Accelerator | None = None,
        precision: Precision | None = None,
        checkpoint_io: CheckpointIO | None = None,
        **resolved: Any,
    ) -> None:
        """Receive what ``Fabric(...)`` resolved, filling in only what was not given to the constructor.

        Resolution passes ``accelerator``, ``precision``, ``checkpoint_io``, ``parallel_devices``,
        ``cluster_environment`` and ``num_nodes``; strategies that need more override this and call
        ``super().connect(**resolved)``.
        """
        if self._accelerator is None and accelerator is not None:
            self._accelerator = accelerator
        if self._precision is None and precision is not None:
            self._precision = precision
        if checkpoint_io is not None:
            if self._checkpoint_io is not None and self._checkpoint_io is not checkpoint_io:
                raise ValueError(
                    f"Two checkpoint IO plugins were given: {self._checkpoint_io!r} on the strategy and "
                    f"{checkpoint_io!r} in plugins=. Pass only one."
                )
            self._checkpoint_io = checkpoint_io

    def precision_for(self, name: str) -> Precision | None:
        """Specialise a precision name for this strategy (e.g. FSDP's own class); ``None`` keeps the default."""
        return None

    def configure_launcher(self) -> None:
        """Create :attr:`launcher` once the strategy knows its devices and environment."""

    @property
    def launcher(self) -> Launcher | None:
        return self._launcher

    # -- where this process sits -------------------------------------------------------------------

    @property
    @abstractmethod
    def root_device(self) -> torch.device:
        """The device this process computes on."""

    @property
    def needs_launch(self) -> bool:
        """Whether ``Fabric.launch()`` (or the ``fabric run`` CLI) must run before setup."""
        return False

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def node_rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any] | None:
        """``num_replicas``/``rank`` for a ``DistributedSampler``, or ``None`` when data is not split."""
        return None

    def setup_environment(self) -> None:
        """Prepare this process (select the device, join the process group). Runs in every process."""
        if self.accelerator is not None:
            self.accelerator.setup_device(self.root_device)

    # -- models, optimizers, data ------------------------------------------------------------------

    def setup_module_and_optimizers(
        self, module: Module, optimizers: list[Optimizer], scheduler: Any | None = None
    ) -> tuple[Module, list[Optimizer], Any | None]:
        """Wrap the module and its optimizers together (strategies that shard both override this)."""
        module = self.setup_module(module)
        return module, [self.setup_optimizer(o) for o in optimizers], scheduler

    def setup_module(self, module: Module) -> Module:
        """Wrap the module for this strategy (e.g. in ``DistributedDataParallel``)."""
        return module

    def setup_optimizer(self, optimizer: Optimizer) -> Optimizer:
        """Wrap or adapt the optimizer for this strategy."""
        return optimizer

    def module_to_device(self, module: Module) -> None:
        """Move the module's parameters and buffers to :attr:`root_device`."""
        module.to(self.root_device)

    def module_init_context(self, empty_init: bool | None = None) -> AbstractContextManager:
        """The context ``Fabric.init_module`` runs under: on the device, in the precision's dtype."""
        stack = ExitStack()
        stack.enter_context(self.root_device)
        if empty_init:
            stack.enter_context(EmptyInit())
        stack.enter_context(self.precision.module_init_context())
        return stack

    def tensor_init_context(self) -> AbstractContextManager:
        """The context ``Fabric.init_tensor`` runs under."""
        stack = ExitStack()
        stack.enter_context(self.root_device)
        stack.enter_context(self.precision.tensor_init_context())
        return stack

    def process_dataloader(self, dataloader: Any) -> Any:
        """Adapt a dataloader (after Fabric injected its sampler)."""
        return dataloader

    # -- the training step -------------------------------------------------------------------------

    def backward(self, tensor: Tensor, module: Module | None, *args: Any, **kwargs: Any) -> None:
        """Back-propagate ``tensor`` through the precision plugin (which scales the loss where it must)."""
        precision = self.precision
        precision.pre_backward(tensor, module)
        precision.backward(tensor, module, *args, **kwargs)
        precision.post_backward(tensor, module)

    def optimizer_step(self, optimizer: Optimizer, **kwargs: Any) -> Any:
        """Step ``optimizer`` through the precision plugin."""
        return self.precision.optimizer_step(optimizer, **kwargs)

    def no_backward_sync(self, module: Module, enabled: bool) -> AbstractContextManager | None:
        """A context that skips gradient synchronisation in backward, or ``None`` if unsupported."""
        return nullcontext()

    def clip_gradients_norm(
        self,
        module: Module,
        optimizer: Optimizer,
        max_norm: float,
        norm_type: float = 2.0,
        error_if_nonfinite: bool = True,
    ) -> Tensor:
        """Clip gradients to a total ``norm_type`` norm of ``max_norm``; return the norm before clipping."""
        precision = self.precision
        precision.unscale_gradients(optimizer)
        # With loss scaling, overflowing gradients are expected now and then: the step is skipped.
        error_if_nonfinite = error_if_nonfinite and not precision.skips_nonfinite_steps
        return self.clip_grad_norm(list(precision.main_params(optimizer)), max_norm, norm_type, error_if_nonfinite)

    def clip_grad_norm(
        self, parameters: list[Tensor], max_norm: float, norm_type: float, error_if_nonfinite: bool
    ) -> Tensor:
        """Rescale the (unscaled) gradients of ``parameters`` to a total norm of at most ``max_norm``.

        The part of :meth:`clip_gradients_norm` a strategy whose parameters are sharded overrides, to
        compute the norm over every shard.
        """
        return torch.nn.utils.clip_grad_norm_(
            parameters, max_norm=max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite
        )

    def clip_gradients_value(self, module: Module, optimizer: Optimizer, clip_val: float) -> None:
        """Clamp every gradient element into ``[-clip_val, clip_val]``."""
        self.precision.unscale_gradients(optimizer)
        torch.nn.utils.clip_grad_value_(list(self.precision.main_params(optimizer)), clip_value=clip_val)

    # -- collectives -------------------------------------------------------------------------------

    @abstractmethod
    def all_gather(self, tensor: Tensor, group: Any | None = None, sync_grads: bool = False) -> Tensor:
        """Gather ``tensor`` from every process: shape ``(world_size, *tensor.shape)`` when world size > 1."""

    @abstractmethod
    def all_reduce(self, tensor: Tensor, group: Any | None = None, reduce_op: Any | None = "mean") -> Tensor:
        """Reduce ``tensor`` over every process (in place where possible)."""

    @abstractmethod
    def barrier(self, name: str | None = None) -> None:
        """Wait until every process reaches this call."""

    @abstractmethod
    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Send ``obj`` from process ``src`` to all others."""

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """Combine a boolean over processes: ``all`` processes agree, else ``any`` of them."""
        return decision

    # -- checkpoints -------------------------------------------------------------------------------

    def get_module_state_dict(self, module: Module) -> dict[str, Any]:
        return module.state_dict()

    def load_module_state_dict(self, module: Module, state_dict: dict[str, Any], strict: bool = True) -> None:
        module.load_state_dict(state_dict, strict=strict)

    def get_optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def convert_state(self, state: dict[str, Any], filter: dict[str, Callable] | None = None) -> dict[str, Any]:
        """Replace modules, optimizers and other stateful objects in ``state`` by their state dicts."""
        converted: dict[str, Any] = {}
        for key, obj in state.items():
            if isinstance(obj, Module):
                value = self.get_module_state_dict(obj)
            elif isinstance(obj, Optimizer):
                value = self.get_optimizer_state(obj)
            elif _is_stateful(obj):
                value = obj.state_dict()
            else:
                value = obj
            _apply_filter(key, filter or {}, value, converted)
        return converted

    def save_checkpoint(
        self,
        path: str | Path,
        state: dict[str, Any],
        storage_options: Any | None = None,
        filter: dict[str, Callable[[str, Any], bool]] | None = None,
    ) -> None:
        """Write ``state`` (modules and optimizers converted to state dicts) from global rank 0."""
        converted = self.convert_state(state, filter)
        if self.is_global_zero:
            try:
                self.checkpoint_io.save_checkpoint(checkpoint=converted, path=path, storage_options=storage_options)
            except (OSError, RuntimeError) as err:  # a checkpoint IO's own error: name the checkpoint
                explained = checkpoint_errors.explain_save_error(err, path)
                if explained is err:
                    raise
                raise explained from err

    def load_checkpoint(
        self,
        path: str | Path,
        state: Module | Optimizer | dict[str, Any] | None = None,
        strict: bool = True,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Restore ``state`` in place from ``path``; return what the checkpoint holds beyond it.

        ``weights_only`` goes to the checkpoint IO (``None``: its own setting).
        """
        try:
            checkpoint = load_with(self.checkpoint_io, path, weights_only)
        except OSError as err:  # a checkpoint IO's own error: name the checkpoint
            explained = checkpoint_errors.explain_load_error(err, path)
            if explained is err:
                raise
            raise explained from err
        if state is None:
            return checkpoint
        if isinstance(state, Module):
            self._load_module(state, checkpoint, strict, path)
            return {}
        if isinstance(state, Optimizer):
            _load_stateful(state, checkpoint, path)
            return {}
        if not isinstance(checkpoint, dict):
            raise TypeError(
                f"Checkpoint '{path}' holds a {type(checkpoint).__name__}, not a dict of named states, so it cannot "
                "restore a state dict. Load it with fabric.load(path) (no state) or fabric.load_raw(path, obj)."
            )
        validate_keys_for_loading(state.keys(), checkpoint.keys(), strict=strict, path=path)
        for name, obj in list(state.items()):
            if name not in checkpoint:
                continue
            value = checkpoint.pop(name)
            if isinstance(obj, Module):
                self._load_module(obj, value, strict, path, key=name)
            elif _is_stateful(obj):
                _load_stateful(obj, value, path, key=name)
            else:
                state[name] = value
        return checkpoint

    def _load_module(
        self, module: Module, state_dict: Any, strict: bool, path: str | Path, key: str | None = None
    ) -> None:
        """:meth:`load_module_state_dict`, with a mismatch explained per key and naming the checkpoint."""
        try:
            self.load_module_state_dict(module, state_dict, strict=strict)
        except RuntimeError as err:
            explained = checkpoint_errors.explain_state_mismatch(err, path, key)
            if explained is err:
                raise
            raise explained from None  # the explanation lists every key torch's message did

    # -- the end -----------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Release everything the strategy set up (process groups, device memory, IO)."""
        self.precision.teardown()
        if self._checkpoint_io is not None:
            self._checkpoint_io.teardown()
        if self.accelerator is not None:
            self.accelerator.teardown()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _load_stateful(obj: Any, state_dict: Any, path: str | Path, key: str | None = None) -> None:
    """``obj.load_state_dict(state_dict)``, with a mismatch naming the checkpoint."""
    try:
        obj.load_state_dict(state_dict)
    except (RuntimeError, ValueError) as err:
        explained = checkpoint_errors.explain_state_mismatch(err, path, key)
        if explained is err:
            raise
        raise explained from err


def validate_keys_for_loading(
    requested: Iterable[str], available: Iterable[str], strict: bool, path: str | Path
) -> None:
    """With ``strict``, every requested key must be in the checkpoint."""
    if not strict:
        return
    missing = [key for key in requested if key not in set(available)]
    if missing:
        raise CheckpointKeyError(
            f"The state to restore asks for {missing} but checkpoint '{path}' has no such key (it holds "
            f"{sorted(available)}). Remove those keys from the state, or load with strict=False to skip them."
        )
