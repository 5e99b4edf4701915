"""True half precision: float16 or bfloat16 weights and computation, no float32 copy."""

from __future__ import annotations

from typing import Literal

import torch

from fabric_core.precision.true_dtype import TrueDtypePrecision

_DTYPES = {"16-true": torch.float16, "bf16-true": torch.bfloat16}


class HalfPrecision(TrueDtypePrecision):
    """``"16-true"`` (float16) or ``"bf16-true"`` (bfloat16) parameters, buffers and inputs.

    Outputs are cast back to the default dtype (float32).
    """

    def __init__(self, precision: Literal["16-true", "bf16-true"] = "16-true") -> None:
        if precision not in _DTYPES:
            raise ValueError(
                f"HalfPrecision(precision={precision!r}) is not supported: expected '16-true' or 'bf16-true'."
            )
        self.precision = precision
        self._dtype = _DTYPES[precision]
