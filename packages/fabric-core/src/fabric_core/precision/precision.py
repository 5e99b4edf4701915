"""The precision interface and full (32-bit) precision."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.optim import Optimizer


@contextmanager
def default_dtype(dtype: torch.dtype) -> Generator[None, None, None]:
    """Make ``dtype`` the default floating-point dtype inside the block."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class Precision:
    """Full 32-bit precision (``"32-true"``), and the interface every precision plugin implements.

    Subclass it to add a precision; override only what differs from plain float32 training::

        import torch
        from fabric_core.precision import Precision
        from fabric_core.plugins import hookimpl


        class Float8Weights(Precision):
            precision = "fp8-weights"

            def convert_module(self, module):
                return my_fp8_library.convert(module)

            def forward_context(self):
                return my_fp8_library.autocast()


        @hookimpl
        def fabric_register_precisions(registry):
            registry.register("fp8-weights", Float8Weights, description="FP8 weights")

    A constructor parameter named ``device`` receives the accelerator's device type when the precision
    is chosen by name (``Fabric(precision="...")``).

    How a set-up model's forward runs is derived from what the class overrides, once at
    ``fabric.setup``: a precision that overrides any of the forward hooks (:meth:`convert_input`,
    :meth:`forward_context`, :meth:`convert_output`) gets all three called on every forward; one that
    overrides none of them (plain ``"32-true"``) lets the model be called directly. There is nothing
    to declare or switch off: in the example above, ``forward_context`` runs on every forward because
    ``Float8Weights`` overrides it. ``fabric_core.testing.PrecisionConformance`` checks, through Fabric,
    that every hook your class overrides is called.
    """

    precision: str = "32-true"

    @property
    def skips_nonfinite_steps(self) -> bool:
        """Whether a step with non-finite gradients is skipped here (loss scaling), so clipping must not raise."""
        return False

    def convert_module(self, module: Module) -> Module:
        """Convert the module's parameters and buffers (e.g. to a lower-precision dtype)."""
        return module

    def convert_input(self, data: Any) -> Any:
        """Convert the forward inputs (tensors or collections of tensors)."""
        return data

    def convert_output(self, data: Any) -> Any:
        """Convert the forward outputs back to the dtype the user's code expects."""
        return data

    def forward_context(self) -> AbstractContextManager:
        """The context the model's forward runs under (e.g. ``torch.autocast``)."""
        return nullcontext()

    def module_init_context(self) -> AbstractContextManager:
        """The context ``Fabric.init_module()`` creates parameters under."""
        return nullcontext()

    def tensor_init_context(self) -> AbstractContextManager:
        """The context ``Fabric.init_tensor()`` creates tensors under."""
        return nullcontext()

    def pre_backward(self, tensor: Tensor, module: Module | None) -> Any:
        """Hook before backward. Its result is not used: the loss goes to :meth:`backward` as it is."""
        return tensor

    def backward(self, tensor: Tensor, model: Module | None, *args: Any, **kwargs: Any) -> None:
        """Run backward on the loss; a precision that scales the loss (e.g. ``16-mixed``) scales it here."""
        tensor.backward(*args, **kwargs)

    def post_backward(self, tensor: Tensor, module: Module | None) -> Any:
        """Hook after backward."""
        return tensor

    def _changes_backward(self) -> bool:
        """Whether ``fabric.backward`` does more than ``loss.backward()`` here (see :func:`needs_fabric_backward`)."""
        return any(overrides(self, hook) for hook in BACKWARD_HOOKS)

    def optimizer_step(self, optimizer: Optimizer, **kwargs: Any) -> Any:
        """Step the optimizer (e.g. through a gradient scaler)."""
        return optimizer.step(**kwargs)

    def main_params(self, optimizer: Optimizer) -> Iterator[torch.nn.Parameter]:
        """The parameters whose gradients clipping works on."""
        for group in optimizer.param_groups:
            yield from group["params"]

    def unscale_gradients(self, optimizer: Optimizer) -> None:
        """Undo loss scaling on the gradients before they are clipped or inspected."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in a checkpoint (e.g. the gradient scaler's)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def teardown(self) -> None:
        """Release what the precision holds at the end of a run."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(precision={self.precision!r})"


#: The hooks a set-up model's forward runs: overriding any of them puts the precision in the forward.
FORWARD_HOOKS = ("convert_input", "forward_context", "convert_output")


#: The hooks ``fabric.backward`` runs: overriding any of them means a plain ``loss.backward()`` would skip something.
BACKWARD_HOOKS = ("pre_backward", "backward", "post_backward")


def overrides(precision: Any, hook: str, base: type | None = None) -> bool:
    """Whether ``precision`` replaces ``base``'s own ``hook`` (in its class or on the instance).

    ``base`` is :class:`Precision` unless given (a subclass that refines a hook's default compares to itself).

    Objects that are no instance of ``base`` count as overriding everything: nothing can be assumed of them.

    Example::

        overrides(Precision(), "forward_context")  # False
        overrides(MixedPrecision("bf16-mixed", device="cpu"), "forward_context")  # True
    """
    base = Precision if base is None else base
    if not isinstance(precision, base):
        return True
    if hook in getattr(precision, "__dict__", {}):
        return True  # set on the instance: whatever it is, it is not the default
    return getattr(type(precision), hook) is not getattr(base, hook)


def changes_forward(precision: Any) -> bool:
    """Whether a set-up model's forward must run ``precision``'s forward hooks (see :data:`FORWARD_HOOKS`).

    Derived from what the precision overrides, so a subclass never has to declare it; ``False`` only for
    a precision whose forward hooks are all :class:`Precision`'s own, which change nothing.

    Example::

        changes_forward(Precision())  # False: the model is called directly
        changes_forward(HalfPrecision("bf16-true"))  # True
    """
    return any(overrides(precision, hook) for hook in FORWARD_HOOKS)


def needs_fabric_backward(strategy: Any) -> bool:
    """Whether a set-up model's loss must go through ``fabric.backward`` rather than ``loss.backward()``.

    Derived from what the strategy and its precision override: ``True`` when the strategy replaces
    ``Strategy.backward`` or the precision changes backward (``16-mixed`` scales the loss there;
    ``bf16-mixed``, with no scaler, does not). Set-up models then make a plain ``loss.backward()``
    raise instead of silently skipping that work.

    Example::

        needs_fabric_backward(Fabric(precision="16-mixed").strategy)  # True
        needs_fabric_backward(Fabric(precision="bf16-mixed").strategy)  # False
    """
    from fabric_core.strategies.strategy import Strategy

    if not isinstance(strategy, Strategy) or "backward" in vars(strategy):
        return True
    if type(strategy).backward is not Strategy.backward:
        return True
    changes_backward = getattr(strategy.precision, "_changes_backward", None)
    return changes_backward() if callable(changes_backward) else True
