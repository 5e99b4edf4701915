"""Automatic mixed precision with ``torch.autocast`` and, for float16, a gradient scaler."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
from torch import Tensor
from torch.nn import Module
from torch.optim import LBFGS, Optimizer

from fabric_core.precision.precision import BACKWARD_HOOKS, Precision, overrides
from fabric_core.utilities.apply_func import convert_fp_collection

_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


class MixedPrecision(Precision):
    """``"16-mixed"`` or ``"bf16-mixed"``: float32 weights, the forward under ``torch.autocast``.

    Args:
        precision: ``"16-mixed"`` (float16, with loss scaling) or ``"bf16-mixed"`` (bfloat16, none).
        device: the device type autocast runs on (``"cuda"``, ``"cpu"``, ...).
        scaler: a ``torch.amp.GradScaler`` to use for ``"16-mixed"``; one is created when omitted.
            ``"bf16-mixed"`` takes none.

    Example::

        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**14)
        fabric = Fabric(plugins=MixedPrecision("16-mixed", device="cuda", scaler=scaler))
    """

    def __init__(
        self,
        precision: Literal["16-mixed", "bf16-mixed"] = "16-mixed",
        device: str = "cuda",
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if precision not in _DTYPES:
            raise ValueError(
                f"MixedPrecision(precision={precision!r}) is not supported: expected '16-mixed' or 'bf16-mixed'."
            )
        if not isinstance(device, str):
            raise TypeError(f"MixedPrecision(device={device!r}) must be a device type string such as 'cuda'.")
        if scaler is not None and precision == "bf16-mixed":
            raise ValueError(
                "MixedPrecision('bf16-mixed') takes no gradient scaler: bfloat16 has float32's range, so "
                "loss scaling is not needed. Remove the `scaler` argument."
            )
        if scaler is None and precision == "16-mixed":
            scaler = torch.amp.GradScaler(device)
        self.precision = precision
        self.device = device
        self.scaler = scaler
        self._dtype = _DTYPES[precision]

    @property
    def skips_nonfinite_steps(self) -> bool:
        return self.scaler is not None

    def forward_context(self) -> AbstractContextManager:
        return torch.autocast(self.device, dtype=self._dtype)

    def convert_input(self, data: Any) -> Any:
        return convert_fp_collection(data, self._dtype)

    def convert_output(self, data: Any) -> Any:
        return convert_fp_collection(data, torch.get_default_dtype())

    def backward(self, tensor: Tensor, model: Module | None, *args: Any, **kwargs: Any) -> None:
        if self.scaler is not None:
            tensor = self.scaler.scale(tensor)  # here, not in pre_backward: a strategy calls backward with the raw loss
        super().backward(tensor, model, *args, **kwargs)

    def _changes_backward(self) -> bool:
        # Without a scaler (bf16-mixed) this class's backward is the plain one; a subclass's own overrides still count.
        return self.scaler is not None or any(overrides(self, hook, base=MixedPrecision) for hook in BACKWARD_HOOKS)

    def optimizer_step(self, optimizer: Optimizer, **kwargs: Any) -> Any:
        if self.scaler is None:
            return optimizer.step(**kwargs)
        if isinstance(optimizer, LBFGS):
            raise TypeError(
                "precision='16-mixed' cannot step torch.optim.LBFGS: its closure re-evaluates the loss, which "
                "gradient scaling does not support. Use precision='bf16-mixed' or '32-true' with LBFGS."
            )
        closure = kwargs.pop("closure", None)
        if closure is not None:
            closure()  # the gradients must exist before the scaler can unscale and check them
        output = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        return output

    def unscale_gradients(self, optimizer: Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None:
            self.scaler.load_state_dict(state_dict)
