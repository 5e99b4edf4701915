"""The Apple-silicon (Metal Performance Shaders) accelerator."""

from __future__ import annotations

import platform
from typing import Any

import torch

from fabric_core.accelerators.accelerator import Accelerator


class MPSAccelerator(Accelerator):
    """Runs on the GPU of an Apple-silicon Mac. There is one such device: ``devices`` must be 1."""

    device_type = "mps"
    priority = 10
    is_gpu = True
    default_process_group_backend = "gloo"

    def setup_device(self, device: torch.device) -> None:
        """Check that ``device`` is the MPS device; anything else is a ``ValueError`` (as in Lightning)."""
        device = torch.device(device)
        if device.type != "mps":
            raise ValueError(
                f"MPSAccelerator.setup_device({device}): expected the MPS device, torch.device('mps'). Use "
                f"the accelerator of {device.type!r} devices for this one (e.g. accelerator={device.type!r})."
            )

    @staticmethod
    def is_available() -> bool:
        # Only ask torch on macOS/arm64: elsewhere the backend cannot exist, and asking costs time.
        if platform.system() != "Darwin" or platform.machine() != "arm64":
            return False
        backend = getattr(torch.backends, "mps", None)
        return bool(backend is not None and backend.is_available())

    @staticmethod
    def parse_devices(devices: Any) -> list[int]:
        value = devices
        if isinstance(value, bool):
            value = None  # True == 1 in Python, but devices=True is not a count
        if isinstance(value, str):
            value = value.strip()
            value = [int(v) for v in value.split(",") if v.strip()] if "," in value else value
            if isinstance(value, str) and value.lstrip("-").isdigit():
                value = int(value)
        if value in (1, -1, [0], (0,)):
            return [0]
        raise ValueError(
            f"devices={devices!r} is not valid for the MPS accelerator: a Mac has one MPS device, so use "
            "devices=1 (or 'auto')."
        )

    @staticmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        return [torch.device("mps", i) for i in MPSAccelerator.parse_devices(devices)]

    @staticmethod
    def auto_device_count() -> int:
        return 1

    def teardown(self) -> None:
        mps = getattr(torch, "mps", None)
        if mps is not None and self.is_available():
            mps.empty_cache()
