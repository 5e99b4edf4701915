"""Turning what ``log_metrics`` receives into plain Python numbers, with errors that name the metric."""

from __future__ import annotations

import numbers
import operator
from typing import Any

from torch import Tensor


def to_number(key: str, value: Any) -> int | float:
    """``value`` as a Python number: one-element tensors and NumPy values via ``.item()``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):  # exact types: a NumPy float64 must not reach csv as "np.float64(...)"
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, Tensor) or (hasattr(value, "item") and hasattr(value, "size")):
        size = value.numel() if isinstance(value, Tensor) else value.size
        if size != 1:
            shape = tuple(value.shape) if hasattr(value, "shape") else size
            raise ValueError(
                f"metric {key!r} has shape {shape}; only single numbers can be logged. Reduce it first (e.g. .mean())."
            )
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(
        f"metric {key!r} is {value!r} ({type(value).__name__}); log a number or a one-element tensor instead."
    )


def check_step(step: Any) -> int:
    """``step`` as an int; it must be a whole number (a one-element integer tensor will do)."""
    if isinstance(step, bool):
        raise TypeError(f"log_metrics(step={step!r}): the step must be an int, not a bool.")
    if isinstance(step, Tensor) and step.numel() == 1 and not step.is_floating_point():
        step = step.item()
    try:
        return operator.index(step)
    except TypeError:
        raise TypeError(
            f"log_metrics(step={step!r}): the step must be an int ({type(step).__name__} given), or None to count "
            "log_metrics calls."
        ) from None
