"""Conformance tests for an :class:`~fabric_core.accelerators.Accelerator` subclass."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from fabric_core.testing._config import required

#: ``devices`` values no accelerator may accept: a word, zero, a negative count, a float and a bool.
BAD_DEVICES: list[Any] = ["nonsense", 0, -5, 2.5, True]


class AcceleratorConformance:
    """Subclass as ``TestMyAccelerator`` and set :attr:`accelerator_cls` to run the checks on it.

    Checks that need the device itself skip where :meth:`~Accelerator.is_available` is ``False``.
    """

    #: The accelerator class under test (the class, not an instance).
    accelerator_cls: type | None = None

    @property
    def _cls(self) -> type:
        return required(self, "accelerator_cls", "an Accelerator subclass", "MyAccelerator")

    def _require_available(self) -> None:
        if not self._cls.is_available():
            pytest.skip(f"{self._cls.__name__} is not available on this machine")

    # -- the class attributes resolution reads -----------------------------------------------------

    def test_device_type_is_a_non_empty_string(self) -> None:
        device_type = self._cls.device_type
        assert isinstance(device_type, str) and device_type, f"device_type is {device_type!r}"

    def test_priority_is_an_int(self) -> None:
        priority = self._cls.priority
        assert isinstance(priority, int) and not isinstance(priority, bool), f"priority is {priority!r}"

    def test_is_gpu_is_a_bool(self) -> None:
        assert isinstance(self._cls.is_gpu, bool), f"is_gpu is {self._cls.is_gpu!r}"

    def test_default_process_group_backend_is_a_non_empty_string(self) -> None:
        backend = self._cls.default_process_group_backend
        assert isinstance(backend, str) and backend, f"default_process_group_backend is {backend!r}"

    # -- availability ------------------------------------------------------------------------------

    def test_is_available_is_a_staticmethod(self) -> None:
        # Resolution asks the class, before any instance exists.
        raw = inspect.getattr_static(self._cls, "is_available")
        assert isinstance(raw, staticmethod), f"{self._cls.__name__}.is_available must be a @staticmethod"

    def test_is_available_returns_a_bool(self) -> None:
        available = self._cls.is_available()
        assert isinstance(available, bool), f"is_available() returned {available!r}, expected True or False"

    def test_auto_device_count_is_a_positive_int_when_available(self) -> None:
        self._require_available()
        count = self._cls.auto_device_count()
        assert isinstance(count, int) and not isinstance(count, bool), f"auto_device_count() returned {count!r}"
        assert count >= 1

    # -- parsing ``devices`` -----------------------------------------------------------------------

    def test_parse_devices_accepts_the_auto_device_count(self) -> None:
        self._require_available()
        self._cls.parse_devices(self._cls.auto_device_count())

    @pytest.mark.parametrize("devices", BAD_DEVICES, ids=repr)
    def test_parse_devices_rejects_a_bad_value_with_value_or_type_error(self, devices: Any) -> None:
        cls = self._cls  # outside the try: a missing accelerator_cls is a TypeError of its own
        try:
            cls.parse_devices(devices)
        except (ValueError, TypeError):
            return
        except Exception as err:
            pytest.fail(
                f"parse_devices({devices!r}) raised {type(err).__name__}: {err}; it must raise ValueError or "
                "TypeError so that Fabric reports a configuration error."
            )
        pytest.fail(f"parse_devices({devices!r}) accepted the value; it must raise ValueError or TypeError")

    @pytest.mark.parametrize("devices", ["nonsense", -5, 2.5], ids=repr)
    def test_parse_devices_error_names_the_bad_value(self, devices: Any) -> None:
        cls = self._cls
        with pytest.raises((ValueError, TypeError)) as info:
            cls.parse_devices(devices)
        assert repr(devices) in str(info.value) or str(devices) in str(info.value)

    # -- devices -----------------------------------------------------------------------------------

    def test_get_parallel_devices_returns_devices_of_this_type(self) -> None:
        self._require_available()
        devices = self._cls.get_parallel_devices(self._cls.parse_devices(self._cls.auto_device_count()))
        assert isinstance(devices, list) and devices, f"get_parallel_devices returned {devices!r}"
        for device in devices:
            assert isinstance(device, torch.device), f"{device!r} is not a torch.device"
            assert device.type == self._cls.device_type

    def test_get_parallel_devices_of_one_device_is_one_device(self) -> None:
        self._require_available()
        devices = self._cls.get_parallel_devices(self._cls.parse_devices(1))
        assert len(devices) == 1

    def test_setup_device_and_teardown_run_on_its_own_device(self) -> None:
        self._require_available()
        accelerator = self._cls()
        (device,) = self._cls.get_parallel_devices(self._cls.parse_devices(1))
        accelerator.setup_device(device)
        assert isinstance(accelerator.get_device_stats(device), dict)
        accelerator.teardown()
