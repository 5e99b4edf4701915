"""Accelerators: the device kinds a run can use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.accelerators.accelerator import Accelerator
    from fabric_core.accelerators.cpu import CPUAccelerator
    from fabric_core.accelerators.mps import MPSAccelerator

__all__ = ["Accelerator", "CPUAccelerator", "MPSAccelerator"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Accelerator": "fabric_core.accelerators.accelerator",
        "CPUAccelerator": "fabric_core.accelerators.cpu",
        "MPSAccelerator": "fabric_core.accelerators.mps",
    },
)
