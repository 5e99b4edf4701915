"""What ``Fabric.setup`` returns: thin wrappers that route forward, step and iteration through Fabric."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from types import MethodType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from fabric_core.precision.precision import changes_forward, needs_fabric_backward
from fabric_core.utilities.apply_func import apply_to_collection, move_data_to_device
from fabric_core.utilities.data import set_sampler_epoch

if TYPE_CHECKING:
    from fabric_core.strategies.strategy import Strategy


class _BackwardState:
    """Whether ``fabric.backward`` is running: a set-up model's outputs check it when their gradient arrives."""

    active = False


def _check_fabric_backward(_grad: Tensor) -> None:
    if not _BackwardState.active:
        raise RuntimeError(
            "loss.backward() was called on the output of a model set up by Fabric, but the selected precision or "
            "strategy needs to run its own backward (e.g. to scale the loss for 16-mixed). Replace "
            "`loss.backward()` with `fabric.backward(loss)`."
        )


def _register_backward_check(output: Any) -> None:
    """Make a plain ``loss.backward()`` on ``output`` raise: the precision or strategy needs ``fabric.backward``."""
    if isinstance(output, Tensor):
        if output.requires_grad:
            output.register_hook(_check_fabric_backward)
        return
    for tensor in _tensors_in(output):
        if tensor.requires_grad:
            tensor.register_hook(_check_fabric_backward)


def _tensors_in(data: Any) -> list[Tensor]:
    found: list[Tensor] = []
    apply_to_collection(data, Tensor, found.append)
    return found


def _forward_path(module: nn.Module, strategy: Strategy) -> Callable[..., Any]:
    """The callable a wrapped model's forward runs, decided once at setup.

    Derived from what the precision overrides (:func:`~fabric_core.precision.precision.changes_forward`):
    one that overrides none of the forward hooks has nothing to do there, so the model is called
    directly; any override puts all three hooks in the path. Where the precision or the strategy needs
    ``fabric.backward`` (:func:`~fabric_core.precision.precision.needs_fabric_backward`), the outputs
    also get a gradient hook that turns a plain ``loss.backward()`` into a clear error.
    """
    precision = strategy.precision
    check_backward = needs_fabric_backward(strategy)
    if not changes_forward(precision) and not check_backward:
        return module  # only Precision's own (identity) forward hooks: call the strategy-wrapped module directly
    convert_input = precision.convert_input
    convert_output = precision.convert_output
    forward_context = precision.forward_context

    def forward(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args, kwargs = convert_input((args, kwargs))
            with forward_context():
                output = module(*args, **kwargs)
        else:  # the usual call: the positional tuple alone takes the precisions' short path
            args = convert_input(args)
            with forward_context():
                output = module(*args)
        output = convert_output(output)
        if check_backward:
            _register_backward_check(output)
        return output

    return forward


class _MarkForwardMethodError(ValueError, AttributeError):
    """``mark_forward_method`` named no method of the model (an ``AttributeError`` too, as in Lightning)."""


class _FabricModule(nn.Module):
    """A set-up model: forward runs under the precision, through the strategy's wrapper (e.g. DDP).

    Attribute access falls through to the user's module, and ``state_dict()`` is the user's module's
    (no wrapper prefixes), so a checkpoint loads into the plain model again.
    """

    def __init__(self, forward_module: nn.Module, strategy: Strategy, original_module: nn.Module) -> None:
        super().__init__()
        self._forward_module = forward_module
        self._original_module = original_module
        self._strategy = strategy
        self._forward_methods: set[str] = set()
        self._derive_forward()
        self._fabric_module_initialized = True

    def _derive_forward(self) -> None:
        # An instance attribute, so nn.Module's __call__ runs the derived path without another frame in
        # between. Kept out of nn.Module's registries: when the path is the module itself it is not a
        # submodule, and it is derived again (not copied) when the wrapper is copied or unpickled.
        self.__dict__["forward"] = _forward_path(self._forward_module, self._strategy)

    @property
    def module(self) -> nn.Module:
        """The user's model."""
        return self._original_module

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are: the device of its first parameter or buffer, or Fabric's device."""
        original = self._original_module
        for tensor in original.parameters():
            return tensor.device
        for tensor in original.buffers():
            return tensor.device
        return self._strategy.root_device

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # replaced per instance by _derive_forward
        return self.__dict__["forward"](*args, **kwargs)

    def mark_forward_method(self, method: str | MethodType) -> None:
        """Route calls of another method (e.g. ``generate``) through forward, so the strategy sees them.

        Needed for strategies that hook into forward (DDP, FSDP) when the model is driven by a method
        other than ``forward``: without it such a call raises an error that names this method.
        """
        if not isinstance(method, (str, MethodType)):
            raise TypeError(f"mark_forward_method expects a method or its name, got {type(method).__name__}.")
        name = method if isinstance(method, str) else method.__name__
        if name == "forward":
            raise ValueError("'forward' already runs through Fabric; mark other methods, such as 'generate'.")
        if not isinstance(getattr(self._original_module, name, None), MethodType):
            raise _MarkForwardMethodError(
                f"mark_forward_method({name!r}): {type(self._original_module).__name__} has no method {name!r}."
            )
        self._forward_methods.add(name)

    def _redirect(self, name: str) -> Callable[..., Any]:
        original = self._original_module

        def call_through_forward(*args: Any, **kwargs: Any) -> Any:
            def redirected_forward(*a: Any, **kw: Any) -> Any:
                # Restore forward before running the method: it may itself call forward.
                del original.forward
                return getattr(original, name)(*a, **kw)

            original.forward = redirected_forward
            try:
                return self(*args, **kwargs)
            finally:
                original.__dict__.pop("forward", None)

        return call_through_forward

    def _guard_unmarked(self, method: MethodType, name: str) -> Callable[..., Any]:
        """``method`` of the user's model, refusing to run the model's submodules outside the strategy's wrapper."""
        original = self._original_module
        model_name = type(original).__name__

        def refuse(module: nn.Module, _args: Any) -> None:
            if module is original or any(module is m for m in original.modules()):
                raise RuntimeError(
                    f"{model_name}.{name}() ran the model outside {type(self._strategy).__name__}'s wrapper, which "
                    f"must see every forward (e.g. to synchronise gradients). Call "
                    f"`model.mark_forward_method({name!r})` after fabric.setup() to route it through forward."
                )

        def guarded(*args: Any, **kwargs: Any) -> Any:
            from torch.nn.modules.module import register_module_forward_pre_hook

            handle = register_module_forward_pre_hook(refuse)
            try:
                return method(*args, **kwargs)
            finally:
                handle.remove()

        guarded.__name__ = name
        guarded.__doc__ = method.__doc__
        return guarded

    def release(self) -> None:
        """Drop the strategy's wrapper (e.g. the DDP reducer) so the process group can be torn down."""
        original = self._original_module
        if self._forward_module is not original:
            nn.Module.__setattr__(self, "_forward_module", original)
            self._derive_forward()

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self._original_module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self._original_module.load_state_dict(state_dict, strict=strict, assign=assign)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("forward", None)  # a closure over this copy's modules: derived again in __setstate__
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._derive_forward()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        original = super().__getattr__("_original_module")
        if name in self.__dict__.get("_forward_methods", ()):
            return self._redirect(name)
        attribute = getattr(original, name)
        if isinstance(attribute, MethodType) and attribute.__self__ is original and self._wrapped_by_strategy():
            return self._guard_unmarked(attribute, name)
        return attribute

    def _wrapped_by_strategy(self) -> bool:
        forward_module = self.__dict__["_modules"]["_forward_module"]
        if is_compiled(forward_module):
            forward_module = forward_module._orig_mod
        return forward_module is not self.__dict__["_modules"]["_original_module"]

    def __setattr__(self, name: str, value: Any) -> None:
        if not self.__dict__.get("_fabric_module_initialized", False):
            super().__setattr__(name, value)
            return
        original = self._original_module
        owned = name in self.__dict__ or name in self._modules or name in self._parameters or name in self._buffers
        if not owned and not hasattr(type(self), name):
            setattr(original, name, value)
            return
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        return f"_FabricModule({self._original_module!r})"


def _optimizer_step_path(optimizer: Optimizer, strategy: Strategy) -> Callable[..., Any]:
    """What ``step`` calls, decided once at setup: the strategy's, else the precision's, else the optimizer's own.

    Derived from what the strategy and precision override, like the forward path: a hook they leave
    as the base class's only passes the call on, so it is skipped.
    """
    from fabric_core.precision.precision import Precision, overrides
    from fabric_core.strategies.strategy import Strategy

    if type(strategy).optimizer_step is not Strategy.optimizer_step or "optimizer_step" in vars(strategy):
        return partial(strategy.optimizer_step, optimizer)
    precision = strategy.precision
    if overrides(precision, "optimizer_step") or not isinstance(precision, Precision):
        return partial(precision.optimizer_step, optimizer)
    return lambda **kwargs: optimizer.step(**kwargs)  # the optimizer's step as it is when called (schedulers patch it)


class _FabricOptimizer:
    """A set-up optimizer: ``step`` goes through the strategy and precision (e.g. a gradient scaler).

    It is an instance of the user's optimizer class too (``isinstance(opt, torch.optim.AdamW)`` holds);
    every other attribute (``param_groups``, ``state``, ``defaults``, hooks) is the user's optimizer's,
    read through, so it always shows the optimizer's current state (after ``load_state_dict`` too).
    """

    def __init__(self, optimizer: Optimizer, strategy: Strategy, callbacks: list[Any] | None = None) -> None:
        self._optimizer = optimizer
        self._strategy = strategy
        self._step = _optimizer_step_path(optimizer, strategy)
        self._after_step = [
            hook for hook in (getattr(cb, "on_after_optimizer_step", None) for cb in callbacks or []) if callable(hook)
        ]
        self.__class__ = type("Fabric" + type(optimizer).__name__, (self.__class__, type(optimizer)), {})

    @property
    def optimizer(self) -> Optimizer:
        """The user's optimizer."""
        return self._optimizer

    def state_dict(self) -> dict[str, Any]:
        return self._strategy.get_optimizer_state(self._optimizer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._optimizer.load_state_dict(state_dict)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        output = self._step() if closure is None else self._step(closure=closure)
        if self._after_step:
            for hook in self._after_step:
                hook(strategy=self._strategy, optimizer=self._optimizer)
        return output

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        if name == "_optimizer":  # during unpickling or copying, before __init__ ran
            raise AttributeError(name)
        return getattr(self._optimizer, name)

    def __repr__(self) -> str:
        return f"_FabricOptimizer({self._optimizer!r})"


class _FabricDataLoader:
    """A set-up dataloader: advances the sampler's epoch on each pass and moves batches to the device."""

    def __init__(self, dataloader: DataLoader, device: torch.device | None = None) -> None:
        self._dataloader = dataloader
        self._device = device
        self._num_iter_calls = 0

    @property
    def device(self) -> torch.device | None:
        """Where batches are moved to (``None``: left where the loader puts them)."""
        return self._device

    def __len__(self) -> int:
        return len(self._dataloader)

    def __iter__(self) -> Iterator[Any]:
        set_sampler_epoch(self._dataloader, self._num_iter_calls)
        self._num_iter_calls += 1
        if self._device is None:
            yield from self._dataloader
            return
        device = self._device
        for batch in self._dataloader:
            yield move_data_to_device(batch, device)

    def __getattr__(self, name: str) -> Any:
        if name == "_dataloader":  # during unpickling, before __init__ ran
            raise AttributeError(name)
        return getattr(self._dataloader, name)

    def __repr__(self) -> str:
        return f"_FabricDataLoader({self._dataloader!r})"


def is_compiled(module: Any) -> bool:
    """Whether ``module`` is the wrapper ``torch.compile`` returns (checked without importing dynamo)."""
    return isinstance(module, nn.Module) and hasattr(module, "_orig_mod") and hasattr(module, "dynamo_ctx")


def recompile(compiled: nn.Module, module: nn.Module) -> nn.Module:
    """Compile ``module`` with the settings ``compiled`` was compiled with."""
    return type(compiled)(module, compiled.dynamo_ctx)


def unwrap(obj: Any) -> Any:
    """The object a Fabric wrapper holds for the strategy (a model's strategy-wrapped module)."""
    if isinstance(obj, _FabricModule):
        module = obj._forward_module
        return module._orig_mod if is_compiled(module) else module
    if isinstance(obj, _FabricOptimizer):
        return obj._optimizer
    if isinstance(obj, _FabricDataLoader):
        return obj._dataloader
    return obj


def is_wrapped(obj: object) -> bool:
    """Whether ``obj`` was set up by Fabric: a module, optimizer or dataloader that ``fabric.setup*`` returned.

    A ``torch.compile``'d set-up module counts too. Plugins use it to treat what the user passes them
    the same whether or not it went through Fabric, without naming Fabric's wrapper classes.

    Example::

        from fabric_core.wrappers import is_wrapped

        model, optimizer = fabric.setup(model, optimizer)
        is_wrapped(model), is_wrapped(optimizer)  # (True, True)
        is_wrapped(torch.nn.Linear(2, 2))  # False
        if is_wrapped(model):
            model = model.module  # the user's own module, as given to fabric.setup
    """
    if is_compiled(obj):
        obj = obj._orig_mod
    return isinstance(obj, (_FabricModule, _FabricOptimizer, _FabricDataLoader))
