"""The ``Fabric`` class: scale a plain PyTorch training loop to any device, process count and precision."""

from __future__ import annotations

import atexit
import inspect
import os
import sys
import weakref
from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.loggers.logger import Logger
from fabric_core.precision.precision import Precision, needs_fabric_backward
from fabric_core.resolution import is_using_cli, resolve
from fabric_core.strategies.strategy import Strategy
from fabric_core.utilities.apply_func import apply_to_collection, convert_to_tensors, move_data_to_device
from fabric_core.utilities.rank_zero import rank_zero_deprecation, rank_zero_state, rank_zero_warn
from fabric_core.utilities.seed import seed_everything as _seed_everything
from fabric_core.wrappers import (
    _BackwardState,
    _FabricDataLoader,
    _FabricModule,
    _FabricOptimizer,
    is_compiled,
    recompile,
    unwrap,
)


def _do_nothing(*_: Any, **__: Any) -> None:
    pass


def _takes_fabric_argument(function: Callable) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True  # a builtin or C function: let the call itself decide
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    return any(p.kind in kinds for p in parameters)


def _uncaught_exception() -> BaseException | None:
    """The exception the interpreter last reported as uncaught (set before ``atexit`` handlers run)."""
    return getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)


def _is_failure(error: BaseException | None) -> bool:
    """Whether ``error`` ends a run as failed: any exception except ``SystemExit`` with a zero/empty code."""
    if error is None:
        return False
    return not (isinstance(error, SystemExit) and error.code in (None, 0))


def _weights_only(weights_only: Any) -> dict[str, bool]:
    """The ``weights_only`` keyword for the strategy: only when one was asked for, so older strategies still load."""
    if weights_only is None:
        return {}
    if not isinstance(weights_only, bool):
        raise TypeError(f"weights_only={weights_only!r}: expected True, False or None (the checkpoint IO's default).")
    return {"weights_only": weights_only}


def _accepted_arguments(method: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``kwargs`` that ``method`` accepts by name (all of them when it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return kwargs  # no signature to read (a builtin): pass everything and let the call decide
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    named = {
        name
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {key: value for key, value in kwargs.items() if key in named}


def _check_path(path: Any, method: str) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"fabric.{method}(path={path!r}) needs a str or os.PathLike path, got {type(path).__name__}.")


class Fabric:
    """Scale a PyTorch training loop with a few changed lines: devices, processes and precision.

    Args:
        accelerator: ``"cpu"``, ``"cuda"``, ``"mps"``, ``"gpu"``, ``"tpu"``, ``"auto"`` or an ``Accelerator``.
        strategy: ``"auto"``, ``"ddp"``, ``"ddp_spawn"``, ``"fsdp"``, ``"deepspeed"``, ... or a ``Strategy``.
        devices: how many devices per node (int), which ones (list or ``"0,1"``), ``-1`` for all, or ``"auto"``.
        num_nodes: the number of nodes (machines) of the run.
        precision: ``"32-true"`` (default), ``"64-true"``, ``"16-mixed"``, ``"bf16-mixed"``, ``"16-true"``,
            ``"bf16-true"``, a plugin's name, or a ``Precision`` instance.
        plugins: a ``Precision``, ``ClusterEnvironment`` or ``CheckpointIO`` instance, or a list of them.
        callbacks: objects whose methods ``fabric.call(name, ...)`` invokes.
        loggers: ``Logger`` instances or registered logger names (``"csv"``, ``"tensorboard"``).

    Example::

        fabric = Fabric(accelerator="cpu", devices=2)
        fabric.launch()
        model, optimizer = fabric.setup(model, optimizer)
        dataloader = fabric.setup_dataloaders(dataloader)
        for x, y in dataloader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            fabric.backward(loss)
            optimizer.step()
    """

    def __init__(
        self,
        *,
        accelerator: str | Accelerator = "auto",
        strategy: str | Strategy = "auto",
        devices: list[int] | str | int = "auto",
        num_nodes: int = 1,
        precision: str | int | Precision | None = None,
        plugins: Any | None = None,
        callbacks: list[Any] | Any | None = None,
        loggers: Logger | str | list[Logger | str] | None = None,
    ) -> None:
        resolved = resolve(accelerator, strategy, devices, num_nodes, precision, plugins, callbacks, loggers)
        self._accelerator = resolved.accelerator
        self._strategy = resolved.strategy
        self._precision = resolved.precision
        self._callbacks = resolved.callbacks
        self._loggers = resolved.loggers
        self._needs_backward = needs_fabric_backward(self._strategy)
        self._models_setup = 0
        self._launched = False
        self._torn_down = False
        self._run_failed = False
        self._uncaught_before_run: BaseException | None = None
        self._wrapped_modules: weakref.WeakSet[_FabricModule] = weakref.WeakSet()
        self._prepare_run_method()
        if is_using_cli():
            # `fabric run` already started one process per device: join the process group now.
            self._setup_environment()
            self._launched = True

    # -- properties --------------------------------------------------------------------------------

    @property
    def accelerator(self) -> Accelerator:
        return self._accelerator

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @property
    def precision_plugin(self) -> Precision:
        return self._precision

    @property
    def device(self) -> torch.device:
        """The device this process computes on."""
        return self._strategy.root_device

    @property
    def global_rank(self) -> int:
        """The index of this process among all processes of the run."""
        return self._strategy.global_rank

    @property
    def local_rank(self) -> int:
        """The index of this process among the processes on its node."""
        return self._strategy.local_rank

    @property
    def node_rank(self) -> int:
        """The index of this process's node."""
        return self._strategy.node_rank

    @property
    def world_size(self) -> int:
        """The number of processes of the run, over all nodes."""
        return self._strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        """Whether this is global rank 0."""
        return self._strategy.is_global_zero

    @property
    def loggers(self) -> list[Logger]:
        """Every logger given to Fabric."""
        return self._loggers

    @property
    def logger(self) -> Logger:
        """The first logger given to Fabric."""
        if not self._loggers:
            raise RuntimeError(
                "fabric.logger: no logger was given to Fabric. Pass one, e.g. Fabric(loggers='csv'), or check "
                "fabric.loggers, which is an empty list."
            )
        return self._loggers[0]

    # -- launching ---------------------------------------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Override this in a subclass with your training code; ``fabric.run()`` then launches it.

        Example::

            class MyFabric(Fabric):
                def run(self, epochs):
                    ...

            MyFabric(devices=2, accelerator="cpu").run(epochs=3)
        """

    def _prepare_run_method(self) -> None:
        if type(self).run is Fabric.run:
            return
        if is_using_cli():
            raise TypeError(
                f"{type(self).__name__} overrides Fabric.run(), which launches processes itself, but the script was "
                "started by `fabric run`, which already did. Run the script with python, or call your training "
                "code directly instead of overriding run()."
            )
        self.run = partial(self._wrap_and_launch, self.run)  # type: ignore[method-assign]

    def launch(self, function: Callable[..., Any] = _do_nothing, *args: Any, **kwargs: Any) -> Any:
        """Start the processes of the run and join the process group; run ``function(fabric, ...)`` in each.

        Returns ``function``'s result on rank 0 (with spawn-based strategies, in the calling process).
        Calling it again without a function does nothing.
        """
        if is_using_cli():
            raise RuntimeError(
                "This script was started by `fabric run`, which already created the processes: remove the "
                "fabric.launch() call, or run the script with python instead of `fabric run`."
            )
        if not callable(function):
            raise TypeError(
                f"fabric.launch({function!r}) needs a callable that takes the Fabric object as its first argument."
            )
        if function is not _do_nothing and not _takes_fabric_argument(function):
            name = getattr(function, "__name__", repr(function))
            raise TypeError(
                f"fabric.launch({name}) : {name}() takes no argument, but launch passes it the Fabric object. "
                f"Define it as `def {name}(fabric, ...)`."
            )
        if self._launched:
            if function is _do_nothing:
                return None
            raise RuntimeError(
                "fabric.launch() was already called in this process, which created the processes of the run. "
                "Call your function directly: fn(fabric)."
            )
        return self._wrap_and_launch(function, self, *args, **kwargs)

    def _wrap_and_launch(self, to_run: Callable, *args: Any, **kwargs: Any) -> Any:
        self._launched = True
        to_run = partial(self._wrap_with_setup, to_run)
        launcher = self._strategy.launcher
        if launcher is not None:
            return launcher.launch(to_run, *args, **kwargs)
        return to_run(*args, **kwargs)

    def _wrap_with_setup(self, to_run: Callable, *args: Any, **kwargs: Any) -> Any:
        import multiprocessing

        self._setup_environment()
        in_worker = multiprocessing.parent_process() is not None
        try:
            return to_run(*args, **kwargs)
        except BaseException as error:
            self._run_failed = self._run_failed or _is_failure(error)
            raise
        finally:
            if in_worker:
                # Workers started by multiprocessing end with os._exit: atexit would never run there.
                self.teardown()

    def _setup_environment(self) -> None:
        if os.environ.get("FABRIC_PARENT_PID"):
            from fabric_core.launchers.subprocess_script import watch_parent

            watch_parent()
        self._strategy.setup_environment()
        # One notion of "rank zero" for the whole process: fabric.log, rank_zero_only and the loggers
        # agree even under a third-party strategy that does not set it itself.
        rank_zero_state.rank = self._strategy.global_rank
        # An uncaught exception reported before the run (e.g. in an interactive session) is not this run's.
        self._uncaught_before_run = _uncaught_exception()
        atexit.register(self.teardown)

    def teardown(self) -> None:
        """End the run in this process: release the wrappers, finalise the loggers, then the strategy.

        Runs by itself when the process exits (and when a worker started by ``launch`` returns), so a
        script never needs it. Call it to end a run early within a process that goes on, e.g. between
        tests or before building a second ``Fabric``: the process group is destroyed and the loggers
        are flushed. Calling it again does nothing.

        Each logger gets ``finalize("failed")`` when the run raised: the function given to ``launch``
        (or an overridden ``run``) raised, an uncaught exception is ending the process, or ``teardown``
        is called while an exception is being handled (``try: ... finally: fabric.teardown()``).
        Otherwise it gets ``finalize("success")``. ``SystemExit`` with code 0 or ``None`` is a success.

        Example::

            fabric = Fabric(accelerator="cpu", loggers="csv")
            fabric.launch()
            try:
                train(fabric)
            finally:
                fabric.teardown()  # the CSV file is complete before the next run starts
        """
        if self._torn_down:
            return
        self._torn_down = True
        atexit.unregister(self.teardown)
        status = "failed" if self._has_failed() else "success"
        for module in list(self._wrapped_modules):
            module.release()
        for logger in self._loggers:
            finalize = getattr(logger, "finalize", None)  # duck-typed loggers may have none
            if callable(finalize):
                finalize(status)
        self._strategy.teardown()

    def _has_failed(self) -> bool:
        if self._run_failed or _is_failure(sys.exc_info()[1]):
            return True
        uncaught = _uncaught_exception()
        return uncaught is not self._uncaught_before_run and _is_failure(uncaught)

    def __getstate__(self) -> dict[str, Any]:
        # Spawned workers receive Fabric by pickling; weak sets and the bound run wrapper cannot travel.
        state = self.__dict__.copy()
        state.pop("_wrapped_modules", None)
        state.pop("run", None)
        state["_uncaught_before_run"] = None  # an exception object with its traceback: not picklable
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._wrapped_modules = weakref.WeakSet()

    def _validate_launched(self, method: str) -> None:
        if self._launched or not self._strategy.needs_launch:
            return
        processes = self.world_size if self.world_size > 1 else "several"
        raise RuntimeError(
            f"fabric.{method}() needs the processes of the run first: {type(self._strategy).__name__} runs "
            f"{processes} processes. Call fabric.launch() before it, or start the script with "
            "`fabric run --devices N script.py`."
        )

    # -- models and optimizers ---------------------------------------------------------------------

    def setup(
        self,
        module: Module,
        *optimizers: Optimizer,
        scheduler: Any | None = None,
        move_to_device: bool = True,
        _reapply_compile: bool = True,
    ) -> Any:
        """Set up a model and its optimizers; returns them wrapped, in the order given.

        Example::

            model, optimizer = fabric.setup(model, optimizer)
            model, opt1, opt2, scheduler = fabric.setup(model, opt1, opt2, scheduler=scheduler)
        """
        self._validate_launched("setup")
        self._validate_module(module, "setup")
        for optimizer in optimizers:
            self._validate_optimizer(optimizer, "setup")
        compiled, module = self._uncompile(module, _reapply_compile)
        module = self._precision.convert_module(module)
        if move_to_device:
            self._strategy.module_to_device(module)
        wrapped, new_optimizers, scheduler = self._strategy.setup_module_and_optimizers(
            module, list(optimizers), scheduler
        )
        fabric_module = self._wrap_module(wrapped, module, compiled)
        fabric_optimizers = [_FabricOptimizer(o, self._strategy, self._callbacks) for o in new_optimizers]
        self._models_setup += 1
        self.call("on_after_setup", fabric=self, module=fabric_module)
        if not optimizers:
            return fabric_module if scheduler is None else (fabric_module, scheduler)
        result = [fabric_module, *fabric_optimizers]
        if scheduler is not None:
            result.append(scheduler)
        return tuple(result)

    def setup_module(self, module: Module, move_to_device: bool = True, _reapply_compile: bool = True) -> _FabricModule:
        """Set up a model alone (e.g. for inference, or before creating the optimizer with sharding)."""
        self._validate_launched("setup_module")
        self._validate_module(module, "setup_module")
        compiled, module = self._uncompile(module, _reapply_compile)
        module = self._precision.convert_module(module)
        if move_to_device:
            self._strategy.module_to_device(module)
        fabric_module = self._wrap_module(self._strategy.setup_module(module), module, compiled)
        self._models_setup += 1
        return fabric_module

    def setup_optimizers(self, *optimizers: Optimizer) -> Any:
        """Set up optimizers of models that were set up with :meth:`setup_module`."""
        self._validate_launched("setup_optimizers")
        if not self._strategy.supports_separate_optimizer_setup:
            raise RuntimeError(
                f"{type(self._strategy).__name__} sets up a model and its optimizers together: use "
                "fabric.setup(model, optimizer) instead of setup_module() + setup_optimizers()."
            )
        if not optimizers:
            raise ValueError("fabric.setup_optimizers() needs at least one optimizer.")
        for optimizer in optimizers:
            self._validate_optimizer(optimizer, "setup_optimizers")
        wrapped = [
            _FabricOptimizer(self._strategy.setup_optimizer(o), self._strategy, self._callbacks) for o in optimizers
        ]
        return wrapped[0] if len(wrapped) == 1 else tuple(wrapped)

    @staticmethod
    def _uncompile(module: Module, reapply_compile: bool) -> tuple[Module | None, Module]:
        """Take a ``torch.compile``d model apart, so the strategy wraps the model and compile wraps both."""
        if reapply_compile and is_compiled(module):
            return module, module._orig_mod
        return None, module

    def _wrap_module(self, forward_module: Module, original: Module, compiled: Module | None = None) -> _FabricModule:
        if compiled is not None:
            forward_module = recompile(compiled, forward_module)
        fabric_module = _FabricModule(forward_module, self._strategy, original_module=original)
        self._wrapped_modules.add(fabric_module)
        return fabric_module

    def _validate_module(self, module: Any, method: str) -> None:
        if isinstance(module, _FabricModule):
            raise ValueError(
                f"fabric.{method}() got a model that was already set up. Set up each model once and keep using the "
                "object it returned."
            )
        if not isinstance(module, Module):
            raise TypeError(
                f"fabric.{method}() expects a torch.nn.Module as its first argument, got {type(module).__name__}. "
                f"Usage: fabric.{method}(model{', optimizer' if method == 'setup' else ''})."
            )

    def _validate_optimizer(self, optimizer: Any, method: str) -> None:
        if isinstance(optimizer, _FabricOptimizer):
            raise ValueError(f"fabric.{method}() got an optimizer that was already set up. Set up each optimizer once.")
        if not isinstance(optimizer, Optimizer):
            hint = " Pass an LR scheduler as scheduler=..." if hasattr(optimizer, "get_last_lr") else ""
            raise TypeError(
                f"fabric.{method}() expects torch.optim.Optimizer instances after the model, got "
                f"{type(optimizer).__name__}.{hint}"
            )

    # -- data --------------------------------------------------------------------------------------

    def setup_dataloaders(
        self, *dataloaders: DataLoader, use_distributed_sampler: bool = True, move_to_device: bool = True
    ) -> Any:
        """Set up dataloaders: each rank gets its share of the data, batches arrive on the device.

        Returns one wrapped loader, or a list when several are given.
        """
        if not dataloaders:
            raise ValueError("fabric.setup_dataloaders() needs at least one DataLoader.")
        for loader in dataloaders:
            if isinstance(loader, _FabricDataLoader):
                raise ValueError("fabric.setup_dataloaders() got a dataloader that was already set up.")
            if not isinstance(loader, DataLoader):
                raise TypeError(
                    f"fabric.setup_dataloaders() expects torch.utils.data.DataLoader instances, got "
                    f"{type(loader).__name__}."
                )
        self._validate_launched("setup_dataloaders")
        wrapped = [self._setup_dataloader(dl, use_distributed_sampler, move_to_device) for dl in dataloaders]
        return wrapped[0] if len(wrapped) == 1 else wrapped

    def _setup_dataloader(self, dataloader: DataLoader, use_distributed_sampler: bool, move_to_device: bool) -> Any:
        from fabric_core.utilities.data import (
            needs_distributed_sampler,
            with_distributed_sampler,
            with_worker_seeding,
        )

        sampler_kwargs = self._strategy.distributed_sampler_kwargs
        if use_distributed_sampler and sampler_kwargs is not None and needs_distributed_sampler(dataloader):
            dataloader = with_distributed_sampler(dataloader, **sampler_kwargs)
        dataloader = with_worker_seeding(dataloader, self.global_rank)
        dataloader = self._strategy.process_dataloader(dataloader)
        device = self.device if move_to_device and self.device.type != "cpu" else None
        return _FabricDataLoader(dataloader, device=device)

    # -- the training step -------------------------------------------------------------------------

    def backward(self, tensor: Tensor, *args: Any, model: _FabricModule | None = None, **kwargs: Any) -> None:
        """Replace ``loss.backward()``: precision (loss scaling) and strategy are handled for you."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"fabric.backward() expects the loss tensor, got {type(tensor).__name__}.")
        if not self._needs_backward:
            # Neither the strategy nor the precision changes backward (derived at construction).
            tensor.backward(*args, **kwargs)
            return
        module = model._forward_module if isinstance(model, _FabricModule) else model
        _BackwardState.active = True  # set-up models' outputs let this backward through
        try:
            self._strategy.backward(tensor, module, *args, **kwargs)
        finally:
            _BackwardState.active = False

    def clip_gradients(
        self,
        module: Module | _FabricModule,
        optimizer: Optimizer | _FabricOptimizer,
        clip_val: float | int | None = None,
        max_norm: float | int | None = None,
        norm_type: float | int = 2.0,
        error_if_nonfinite: bool = True,
    ) -> Tensor | None:
        """Clip gradients by value (``clip_val``) or by total norm (``max_norm``, returns the norm before)."""
        if clip_val is not None and max_norm is not None:
            raise ValueError(
                "fabric.clip_gradients() got both clip_val and max_norm: pass one, clip_val to clamp each gradient "
                "element or max_norm to rescale by the total norm."
            )
        if clip_val is None and max_norm is None:
            raise ValueError("fabric.clip_gradients() needs clip_val=... or max_norm=...")
        if not isinstance(unwrap(module), Module):
            raise TypeError(f"fabric.clip_gradients() expects the model first, got {type(module).__name__}.")
        if not _is_optimizer(unwrap(optimizer)):
            raise TypeError(f"fabric.clip_gradients() expects the optimizer second, got {type(optimizer).__name__}.")
        module, optimizer = unwrap(module), unwrap(optimizer)
        if max_norm is not None:
            return self._strategy.clip_gradients_norm(
                module,
                optimizer,
                max_norm=max_norm,
                norm_type=norm_type,
                error_if_nonfinite=error_if_nonfinite,
            )
        self._strategy.clip_gradients_value(module, optimizer, clip_val=clip_val)
        return None

    @contextmanager
    def autocast(self) -> Generator[None, None, None]:
        """Run the block under the precision's forward context (set-up models already do)."""
        with self._precision.forward_context():
            yield

    def no_backward_sync(self, module: _FabricModule, enabled: bool = True) -> AbstractContextManager:
        """Skip gradient synchronisation in backward (for gradient accumulation); forward and
        ``fabric.backward`` must both run inside the block."""
        if not isinstance(module, _FabricModule):
            raise TypeError(
                "fabric.no_backward_sync() needs a model returned by fabric.setup(): "
                f"got {type(module).__name__}. Use `model = fabric.setup(model, ...)` first."
            )
        if not enabled:
            return nullcontext()
        context = self._strategy.no_backward_sync(module._forward_module, enabled)
        if context is None:
            rank_zero_warn(
                f"{type(self._strategy).__name__} cannot skip gradient synchronisation; no_backward_sync does nothing.",
                stacklevel=3,
            )
            return nullcontext()
        return context

    def to_device(self, obj: Any) -> Any:
        """Move a module, a tensor or a collection of tensors to this process's device."""
        if isinstance(obj, Module):
            self._strategy.module_to_device(obj)
            return obj
        return move_data_to_device(obj, self.device)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on local rank 0 only (once per node)."""
        if self.local_rank == 0:
            print(*args, **kwargs)

    @staticmethod
    def seed_everything(seed: int | None = None, workers: bool | None = None, verbose: bool = True) -> int:
        """Seed every generator (see :func:`fabric_core.seed_everything`); dataloader workers by default."""
        return _seed_everything(seed=seed, workers=True if workers is None else workers, verbose=verbose)

    # -- checkpoints -------------------------------------------------------------------------------

    def save(
        self,
        path: str | Path,
        state: dict[str, Any],
        filter: dict[str, Callable[[str, Any], bool]] | None = None,
    ) -> None:
        """Save ``state`` (models and optimizers are replaced by their state dicts) to ``path``.

        Must be called on every process; the strategy decides which ones write.
        """
        _check_path(path, "save")
        if not isinstance(state, dict):
            raise TypeError(
                f"fabric.save(path, state) needs state as a dict of named objects, e.g. {{'model': model}}; "
                f"got {type(state).__name__}."
            )
        if filter is not None:
            if not isinstance(filter, dict):
                raise TypeError(
                    f"fabric.save(filter=...) must be a dict of callables by state key, got {type(filter).__name__}."
                )
            for key, fn in filter.items():
                if not callable(fn):
                    raise TypeError(f"fabric.save(filter=...): the filter for {key!r} is not callable ({fn!r}).")
            unknown = sorted(set(filter) - set(state))
            if unknown:
                raise ValueError(
                    f"fabric.save(filter=...) has keys {unknown} that are not in the state ({sorted(state)})."
                )
        self._strategy.save_checkpoint(path=path, state=apply_to_collection(state, _WRAPPERS, unwrap), filter=filter)
        self.barrier("fabric.save")

    def load(
        self,
        path: str | Path,
        state: dict[str, Any] | None = None,
        strict: bool = True,
        *,
        weights_only: bool | None = None,
        verify: bool = False,
    ) -> dict[str, Any]:
        """Restore ``state`` in place from ``path``; return what the checkpoint holds beyond it.

        Without ``state``, return the whole checkpoint. Must be called on every process.
        ``weights_only=True`` refuses to unpickle anything but tensors and plain containers (for files
        you do not trust); ``None`` keeps the checkpoint IO's setting (``TorchCheckpointIO``: ``False``).
        ``verify=True`` first checks the checksums of the whole checkpoint on global rank 0 (the CRC-32
        of every record of a file, the manifest of a folder) and raises
        :class:`~fabric_core.io.CheckpointCorruptError` on every rank, listing the problems, before
        anything is loaded; it reads the checkpoint once more (see docs/reliability.md for the cost).
        """
        _check_path(path, "load")
        self._verify_checkpoint(path, verify, "load")
        if state is not None and not isinstance(state, dict):
            raise TypeError(
                f"fabric.load(path, state) needs state as a dict of named objects, got {type(state).__name__}. "
                "To load a plain state dict into one model or optimizer, use fabric.load_raw(path, obj)."
            )
        unwrapped = apply_to_collection(state, _WRAPPERS, unwrap) if state is not None else None
        options = _weights_only(weights_only)
        remainder = self._strategy.load_checkpoint(path=path, state=unwrapped, strict=strict, **options)
        self.barrier("fabric.load")
        if state is not None:
            for key, value in unwrapped.items():
                if not isinstance(state[key], _WRAPPERS):
                    state[key] = value  # plain values (epoch, step, ...) are replaced in the caller's dict
        return remainder

    def load_raw(
        self,
        path: str | Path,
        obj: Module | Optimizer,
        strict: bool = True,
        *,
        weights_only: bool | None = None,
        verify: bool = False,
    ) -> None:
        """Load a plain state dict saved without Fabric (``torch.save(model.state_dict())``) into ``obj``.

        ``weights_only`` and ``verify`` as in :meth:`load`.
        """
        _check_path(path, "load_raw")
        target = unwrap(obj)
        if not isinstance(target, (Module, Optimizer)):
            raise TypeError(f"fabric.load_raw(path, obj) loads into a model or optimizer, got {type(obj).__name__}.")
        self._verify_checkpoint(path, verify, "load_raw")
        self._strategy.load_checkpoint(path=path, state=target, strict=strict, **_weights_only(weights_only))

    def _verify_checkpoint(self, path: str | Path, verify: bool, method: str) -> None:
        """With ``verify``, raise ``CheckpointCorruptError`` on every rank when rank 0 finds ``path`` damaged."""
        if not isinstance(verify, bool):
            raise TypeError(f"fabric.{method}(verify={verify!r}): expected True or False.")
        if not verify:
            return
        from fabric_core.io.integrity import CheckpointCorruptError, verify_checkpoint

        problems: list[str] | None = None
        if self.global_rank == 0:
            try:
                # A missing checkpoint is reported by the load itself, with its own message.
                problems = verify_checkpoint(path) if os.path.lexists(path) else []
            except Exception as err:  # every rank must get an answer, or the others wait in the broadcast
                problems = [f"'{path}' could not be verified ({type(err).__name__}: {err})."]
        if self.world_size > 1:
            problems = self._strategy.broadcast(problems, src=0)
        if problems:
            raise CheckpointCorruptError(path, problems)

    # -- collectives -------------------------------------------------------------------------------

    def all_gather(self, data: Any, group: Any | None = None, sync_grads: bool = False) -> Any:
        """Gather tensors (or collections of them) from every process: a new first dimension of size world_size."""
        data = convert_to_tensors(data, device=self.device)
        return apply_to_collection(data, Tensor, self._strategy.all_gather, group=group, sync_grads=sync_grads)

    def all_reduce(self, data: Any, group: Any | None = None, reduce_op: Any = "mean") -> Any:
        """Reduce tensors (or collections) over every process with ``reduce_op`` (``"mean"``, ``"sum"``, ...)."""
        from fabric_core.utilities.distributed import resolve_reduce_op

        resolve_reduce_op(reduce_op)
        data = convert_to_tensors(data, device=self.device)
        return apply_to_collection(data, Tensor, self._strategy.all_reduce, group=group, reduce_op=reduce_op)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Send ``obj`` from process ``src`` to every process; returns it everywhere."""
        if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < self.world_size:
            raise ValueError(f"fabric.broadcast(src={src!r}) must be a rank in [0, {self.world_size}).")
        return self._strategy.broadcast(obj, src=src)

    def barrier(self, name: str | None = None) -> None:
        """Wait until every process reaches this call."""
        self._strategy.barrier(name=name)

    @contextmanager
    def rank_zero_first(self, local: bool = False) -> Generator[None, None, None]:
        """Run the block on rank 0 first (e.g. a download), then on the other ranks.

        With ``local=True`` the first process of each node goes first.
        """
        rank = self.local_rank if local else self.global_rank
        if rank > 0:
            self.barrier("rank_zero_first (waiting for rank 0)")
        yield
        if rank == 0:
            self.barrier("rank_zero_first (waiting for rank 0)")

    # -- callbacks and logging ---------------------------------------------------------------------

    def call(self, hook_name: str, *args: Any, **kwargs: Any) -> None:
        """Call method ``hook_name`` of every callback that has it.

        Each callback receives only the keyword arguments its method accepts, so callbacks written for
        fewer arguments keep working when a caller passes more.

        Example::

            class Printer:
                def on_train_epoch_end(self, loss):
                    print(loss)

            fabric = Fabric(callbacks=[Printer()])
            fabric.call("on_train_epoch_end", loss=loss, epoch=epoch)  # Printer gets loss only
        """
        for callback in self._callbacks:
            method = getattr(callback, hook_name, None)
            if method is None:
                continue
            if not callable(method):
                rank_zero_warn(
                    f"Callback {type(callback).__name__}.{hook_name} is not callable; skipped.", stacklevel=3
                )
                continue
            method(*args, **_accepted_arguments(method, kwargs) if kwargs else kwargs)

    def log(self, name: str, value: Any, step: int | None = None) -> None:
        """Log one scalar to every logger, from global rank 0 only.

        Example::

            fabric.log("train/loss", loss, step=step)  # call it on every rank; rank 0 writes it
        """
        self.log_dict({name: value}, step=step)

    def log_dict(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log several scalars to every logger, from global rank 0 only; tensors become Python numbers.

        Call it on every rank: the arguments are checked everywhere (so a mistake fails on every rank
        alike), but only the process whose global rank is 0 calls the loggers' ``log_metrics``, and
        only there are tensors copied to the CPU. Other ranks' values are not gathered: reduce them
        first (``fabric.all_reduce``) to log a value over all ranks.

        Example::

            fabric.log_dict({"train/loss": loss, "train/acc": acc}, step=step)
        """
        if not self._loggers:
            return
        if not isinstance(metrics, Mapping):
            raise TypeError(f"fabric.log_dict() needs a mapping of names to scalars, got {type(metrics).__name__}.")
        for key, value in metrics.items():
            if isinstance(value, Tensor) and value.numel() != 1:
                raise ValueError(
                    f"fabric.log: metric {key!r} is a tensor of shape {tuple(value.shape)}; only scalars can be "
                    "logged. Reduce it first (e.g. .mean())."
                )
        # The same notion of rank zero as rank_zero_only, which guards the loggers' own methods.
        if rank_zero_state.rank != 0:
            return
        scalars = {key: value.item() if isinstance(value, Tensor) else value for key, value in metrics.items()}
        for logger in self._loggers:
            logger.log_metrics(metrics=scalars, step=step)

    # -- creating models and tensors ---------------------------------------------------------------

    @contextmanager
    def init_module(self, empty_init: bool | None = None) -> Generator[None, None, None]:
        """Create the model's parameters directly on the device, in the precision's dtype.

        ``empty_init=True`` skips parameter initialisation (for weights loaded right after).
        """
        self._validate_launched("init_module")
        with self._strategy.module_init_context(empty_init=empty_init):
            yield

    @contextmanager
    def init_tensor(self) -> Generator[None, None, None]:
        """Create tensors directly on the device, in the precision's dtype."""
        with self._strategy.tensor_init_context():
            yield

    @contextmanager
    def sharded_model(self) -> Generator[None, None, None]:
        """Deprecated: use :meth:`init_module`."""
        rank_zero_deprecation("fabric.sharded_model() is deprecated; use fabric.init_module() instead.")
        with self.init_module():
            yield

    def __repr__(self) -> str:
        return (
            f"Fabric(accelerator={self._accelerator!r}, strategy={self._strategy!r}, "
            f"precision={self._precision!r}, world_size={self.world_size})"
        )


_WRAPPERS = (_FabricModule, _FabricOptimizer, _FabricDataLoader)


def _is_optimizer(obj: Any) -> bool:
    """A torch optimizer, or a strategy's own that steps like one (DeepSpeed's ZeRO optimizer is no ``Optimizer``)."""
    return isinstance(obj, Optimizer) or (callable(getattr(obj, "step", None)) and hasattr(obj, "param_groups"))
