"""The CPU accelerator."""

from __future__ import annotations

from typing import Any

import torch

from fabric_core.accelerators.accelerator import Accelerator


def parse_cpu_devices(devices: Any) -> int:
    """Read ``devices`` for the CPU: the number of processes to run, an ``int > 0`` or its string."""
    value = devices
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"devices={devices!r} is not valid for the CPU accelerator: expected the number of processes as "
            "an int > 0 (e.g. devices=2) or 'auto'. CPU runs do not take device indices or -1."
        )
    return value


class CPUAccelerator(Accelerator):
    """Runs on the CPU; ``devices=N`` means ``N`` processes, each on the CPU."""

    device_type = "cpu"
    priority = 0
    is_gpu = False
    default_process_group_backend = "gloo"

    def setup_device(self, device: torch.device) -> None:
        if device.type != "cpu":
            raise ValueError(f"CPUAccelerator was asked to set up device {device}, expected a CPU device.")

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def parse_devices(devices: Any) -> int:
        return parse_cpu_devices(devices)

    @staticmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        return [torch.device("cpu")] * parse_cpu_devices(devices)

    @staticmethod
    def auto_device_count() -> int:
        return 1

    def get_device_stats(self, device: torch.device) -> dict[str, Any]:
        try:
            import resource
        except ImportError:  # not on Windows
            return {}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"max_rss_kib": usage.ru_maxrss}
