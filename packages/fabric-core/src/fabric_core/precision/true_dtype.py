"""The shared shape of the "-true" precisions: one dtype for weights, inputs and the forward."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch.nn import Module

from fabric_core.precision.precision import Precision, default_dtype
from fabric_core.utilities.apply_func import convert_fp_collection


class TrueDtypePrecision(Precision):
    """Parameters, buffers, floating-point inputs and new tensors in ``self._dtype``.

    Outputs are cast back to the default dtype (float32), as in Lightning Fabric, so a loss computed
    from them is float32 while the model itself runs in the chosen dtype.
    """

    _dtype: torch.dtype

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
