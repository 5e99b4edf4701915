"""The accelerator interface: what kind of device a run uses and how ``devices`` is read for it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fabric_core.precision.precision import Precision


class Accelerator(ABC):
    """Base class for a device kind (CPU, CUDA GPU, MPS, TPU, ...).

    An accelerator is stateless apart from the device it set up. Resolution of ``Fabric(...)`` asks the
    class, not an instance, whether it is available, so :meth:`is_available` must never initialise the
    device in the calling process (a later ``fork`` must still work).

    A complete plugin, registered under the name ``"mydevice"``::

        import torch
        from fabric_core.accelerators import Accelerator
        from fabric_core.plugins import hookimpl


        class MyDeviceAccelerator(Accelerator):
            device_type = "mydevice"
            priority = 50  # higher than "cpu" (0): ``accelerator="auto"`` picks it when available
            is_gpu = False  # whether ``accelerator="gpu"`` may pick it
            default_process_group_backend = "gloo"

            @staticmethod
            def is_available() -> bool:
                return my_runtime.device_count() > 0  # must not initialise the device

            @staticmethod
            def parse_devices(devices):
                return parse_device_count(devices)  # an int > 0, or a list of indices

            @staticmethod
            def get_parallel_devices(devices):
                return [torch.device("mydevice", i) for i in range(devices)]

            @staticmethod
            def auto_device_count() -> int:
                return my_runtime.device_count()


        @hookimpl
        def fabric_register_accelerators(registry):
            registry.register("mydevice", MyDeviceAccelerator, description="My device")
    """

    #: The ``torch.device`` type string of this accelerator's devices.
    device_type: str = ""
    #: ``accelerator="auto"`` picks the available accelerator with the highest priority (cpu is 0).
    priority: int = 0
    #: Whether ``accelerator="gpu"`` may resolve to this accelerator.
    is_gpu: bool = False
    #: The default ``torch.distributed`` backend for strategies that start a process group.
    default_process_group_backend: str = "gloo"

    def setup_device(self, device: torch.device) -> None:
        """Prepare ``device`` for use by this process (e.g. select it as the current device)."""

    def teardown(self) -> None:
        """Release what :meth:`setup_device` acquired (e.g. cached device memory)."""

    @staticmethod
    @abstractmethod
    def is_available() -> bool:
        """Whether this device kind can be used here, answered without initialising the device."""

    @staticmethod
    @abstractmethod
    def parse_devices(devices: Any) -> Any:
        """Validate the ``devices`` flag (``"auto"`` already replaced by :meth:`auto_device_count`).

        Returns what :meth:`get_parallel_devices` takes. Raises ``ValueError`` or ``TypeError`` naming the
        bad value and what is accepted.
        """

    @staticmethod
    @abstractmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        """The list of devices, one per local process, for the parsed ``devices`` value."""

    @staticmethod
    @abstractmethod
    def auto_device_count() -> int:
        """The number of devices ``devices="auto"`` means on this machine."""

    def validate_precision(self, precision: Precision, devices: list[torch.device]) -> None:
        """Raise ``ValueError`` when ``precision`` cannot run on ``devices`` (e.g. bfloat16 on an old GPU).

        Called by ``Fabric(...)`` once the precision is chosen, in the process that may later fork the
        workers: it must not initialise the device.
        """

    def get_device_stats(self, device: torch.device) -> dict[str, Any]:
        """Device statistics (e.g. memory) for ``device``; empty where the device kind has none."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
