"""Accelerators: the device kinds a run can use."""

from fabric_core.accelerators.accelerator import Accelerator
from fabric_core.accelerators.cpu import CPUAccelerator
from fabric_core.accelerators.mps import MPSAccelerator

__all__ = ["Accelerator", "CPUAccelerator", "MPSAccelerator"]
