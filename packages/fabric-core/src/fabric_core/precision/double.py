"""64-bit (double) precision."""

from __future__ import annotations

import torch
from torch.nn import Module

from fabric_core.precision.true_dtype import TrueDtypePrecision


class DoublePrecision(TrueDtypePrecision):
    """``"64-true"``: floating-point parameters, buffers and inputs in float64; outputs back in float32.

    Only real floating-point tensors change: complex and integer parameters, buffers and inputs keep
    their dtype, as in Lightning Fabric, so a complex64 weight stays complex64 (casting it to float64
    would drop its imaginary part).

    Example::

        fabric = Fabric(precision="64-true")
        model = fabric.setup(model)  # float32 weights are now float64; complex64 ones stay complex64
    """

    precision = "64-true"
    _dtype = torch.float64

    def convert_module(self, module: Module) -> Module:
        # Module.double() casts real floating-point tensors only; Module.to(dtype=...) would also cast
        # complex ones, to a real dtype.
        return module.double()
