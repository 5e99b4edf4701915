"""Precision plugins: how parameters, inputs and the backward pass are represented numerically."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.precision.amp import MixedPrecision
    from fabric_core.precision.double import DoublePrecision
    from fabric_core.precision.half import HalfPrecision
    from fabric_core.precision.precision import Precision

__all__ = ["DoublePrecision", "HalfPrecision", "MixedPrecision", "Precision"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DoublePrecision": "fabric_core.precision.double",
        "HalfPrecision": "fabric_core.precision.half",
        "MixedPrecision": "fabric_core.precision.amp",
        "Precision": "fabric_core.precision.precision",
    },
)
