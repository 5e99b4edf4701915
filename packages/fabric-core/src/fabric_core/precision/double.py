"""64-bit (double) precision."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch.nn import Module

from fabric_core.precision.precision import Precision, default_dtype
from fabric_core.utilities.apply_func import convert_fp_collection


class DoublePrecision(Precision):
    """``"64-true"``: parameters, buffers and floating-point inputs in float64.

    Outputs are cast back to the default dtype (float32), as in Lightning Fabric, so a loss computed
    from them is float32 while the model itself runs in float64.
    """

    precision = "64-true"
    passthrough_forward = False

    def convert_module(self, module: Module) -> Module:
        return module.double()

    def convert_input(self, data: Any) -> Any:
        return convert_fp_collection(data, torch.float64)

    def convert_output(self, data: Any) -> Any:
        return convert_fp_collection(data, torch.get_default_dtype())

    def forward_context(self) -> AbstractContextManager:
        return default_dtype(torch.float64)

    def module_init_context(self) -> AbstractContextManager:
        return default_dtype(torch.float64)

    def tensor_init_context(self) -> AbstractContextManager:
        return default_dtype(torch.float64)
