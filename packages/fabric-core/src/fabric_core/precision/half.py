"""True half precision: float16 or bfloat16 weights and computation, no float32 copy."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
from torch.nn import Module

from fabric_core.precision.precision import Precision, default_dtype
from fabric_core.utilities.apply_func import convert_fp_collection

_DTYPES = {"16-true": torch.float16, "bf16-true": torch.bfloat16}


class HalfPrecision(Precision):
    """``"16-true"`` (float16) or ``"bf16-true"`` (bfloat16) for parameters, buffers and inputs.

    Outputs are cast back to the default dtype (float32).
    """

    passthrough_forward = False

    def __init__(self, precision: Literal["16-true", "bf16-true"] = "16-true") -> None:
        if precision not in _DTYPES:
            raise ValueError(
                f"HalfPrecision(precision={precision!r}) is not supported: expected '16-true' or 'bf16-true'."
            )
        self.precision = precision
        self._dtype = _DTYPES[precision]

    def convert_module(self, module: Module) -> Module:
        return module.to(dtype=self._dtype)

    def convert_input(self, data: Any) -> Any:
        return convert_fp_collection(data, self._dtype)

    def convert_output(self, data: Any) -> Any:
        return convert_fp_collection(data, torch.get_default_dtype())

    def forward_context(self) -> AbstractContextManager:
        return default_dtype(self._dtype)

    def module_init_context(self) -> AbstractContextManager:
        return default_dtype(self._dtype)

    def tensor_init_context(self) -> AbstractContextManager:
        return default_dtype(self._dtype)
