"""The precision interface and full (32-bit) precision."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, ClassVar

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
    """

    precision: str = "32-true"
    #: Whether this precision changes nothing in forward: lets the model wrapper skip the casts.
    passthrough_forward: ClassVar[bool] = True

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

    def pre_backward(self, tensor: Tensor, module: Module | None) -> Tensor:
        """Prepare the loss before backward (e.g. scale it)."""
        return tensor

    def backward(self, tensor: Tensor, model: Module | None, *args: Any, **kwargs: Any) -> None:
        """Run backward on the (prepared) loss."""
        tensor.backward(*args, **kwargs)

    def post_backward(self, tensor: Tensor, module: Module | None) -> Tensor:
        """Hook after backward."""
        return tensor

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
