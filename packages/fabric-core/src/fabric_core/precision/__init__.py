"""Precision plugins: how parameters, inputs and the backward pass are represented numerically."""

from fabric_core.precision.amp import MixedPrecision
from fabric_core.precision.double import DoublePrecision
from fabric_core.precision.half import HalfPrecision
from fabric_core.precision.precision import Precision

__all__ = ["DoublePrecision", "HalfPrecision", "MixedPrecision", "Precision"]
