"""64-bit (double) precision."""

from __future__ import annotations

import torch

from fabric_core.precision.true_dtype import TrueDtypePrecision


class DoublePrecision(TrueDtypePrecision):
    """``"64-true"``: parameters, buffers and floating-point inputs in float64; outputs back in float32."""

    precision = "64-true"
    _dtype = torch.float64
