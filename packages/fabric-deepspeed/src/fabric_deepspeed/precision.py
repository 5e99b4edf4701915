"""``DeepSpeedPrecision``: the precision flags, carried out by DeepSpeed's engine (its ``bf16``/``fp16`` sections)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch
from torch import Tensor
from torch.nn import Module
from torch.optim import Optimizer

from fabric_core.precision.precision import Precision, default_dtype
from fabric_core.utilities.apply_func import convert_fp_collection

_DTYPES = {
    "32-true": torch.float32,
    "16-true": torch.float16,
    "bf16-true": torch.bfloat16,
    "16-mixed": torch.float16,
    "bf16-mixed": torch.bfloat16,
}
PRECISIONS = tuple(_DTYPES)


class DeepSpeedPrecision(Precision):
    """``"32-true"``, ``"bf16-mixed"``, ``"bf16-true"``, ``"16-mixed"`` or ``"16-true"`` under DeepSpeed.

    DeepSpeed does the work: the strategy adds the matching section to its config (``{"bf16":
    {"enabled": true}}``, or ``"fp16"`` with dynamic loss scaling), and the engine then keeps the model
    in the half dtype and float32 master weights in its ZeRO optimizer. ``-mixed`` and ``-true`` both
    mean that in DeepSpeed; under ``-true`` the model is also cast, and created, in the half dtype.
    Floating-point inputs are cast to the model's dtype and outputs back to float32, as in Lightning.
    Backward and the optimizer step go through the engine, which scales the loss for float16.

    ``Fabric(strategy="deepspeed", precision="bf16-mixed")`` creates it; there is nothing to configure::

        fabric = Fabric(strategy="deepspeed_stage_3", precision="bf16-mixed", devices=2)
    """

    def __init__(self, precision: Literal["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"]) -> None:
        if precision not in _DTYPES:
            raise ValueError(
                f"DeepSpeedPrecision(precision={precision!r}) is not supported: expected one of "
                f"{', '.join(repr(p) for p in PRECISIONS)}."
            )
        self.precision = precision
        self._dtype = _DTYPES[precision]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the engine computes in."""
        return self._dtype

    @property
    def skips_nonfinite_steps(self) -> bool:
        return self._dtype == torch.float16  # DeepSpeed's loss scaler skips overflowing steps

    def convert_module(self, module: Module) -> Module:
        if self.precision.endswith("-true") and self._dtype != torch.float32:
            return module.to(dtype=self._dtype)
        return module

    def module_init_context(self) -> AbstractContextManager:
        return self.tensor_init_context()

    def tensor_init_context(self) -> AbstractContextManager:
        if self.precision.endswith("-true") and self._dtype != torch.float32:
            return default_dtype(self._dtype)
        return nullcontext()

    def convert_input(self, data: Any) -> Any:
        if self._dtype == torch.float32:
            return data
        return convert_fp_collection(data, self._dtype)

    def convert_output(self, data: Any) -> Any:
        if self._dtype == torch.float32:
            return data
        return convert_fp_collection(data, torch.get_default_dtype())

    def backward(self, tensor: Tensor, model: Module | None, *args: Any, **kwargs: Any) -> None:
        """Back-propagate through DeepSpeed's engine (``model``), which scales the loss where it must."""
        if model is None or not callable(getattr(model, "backward", None)):
            raise RuntimeError(
                "DeepSpeedPrecision.backward needs the DeepSpeed engine of the model: call fabric.backward(loss) "
                "(or fabric.backward(loss, model=model) with several models) after fabric.setup(model, optimizer)."
            )
        model.backward(tensor, *args, **kwargs)

    def optimizer_step(self, optimizer: Optimizer, **kwargs: Any) -> Any:
        return optimizer.step(**kwargs)
