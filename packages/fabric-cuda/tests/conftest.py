"""A pretend GPU machine for the CPU tests: torch.cuda's answers replaced, CUDA initialisation forbidden."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import torch

from fabric_cuda import accelerator as accelerator_module
from fabric_cuda import nvml
from fabric_cuda.accelerator import NVML_CHECK_ENV
from fabric_cuda.nvml import GpuInfo


@dataclass
class FakeMachine:
    """What the fake recorded: the devices selected and how ``torch.cuda.is_available`` was asked."""

    gpus: tuple[GpuInfo, ...]
    set_devices: list[torch.device] = field(default_factory=list)
    lazy_inits: int = 0
    availability_checks: list[str | None] = field(default_factory=list)


@pytest.fixture(autouse=True)
def _fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts as a fresh process would: no TF32 hint given, no NVML preference set by Fabric."""
    monkeypatch.setattr(accelerator_module, "_tf32_hint_given", False)
    monkeypatch.delenv(NVML_CHECK_ENV, raising=False)
    yield


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeMachine]:
    """``fake_gpus(count, capability=(8, 0), name=...)`` makes torch and NVML report ``count`` GPUs.

    The visible count follows ``CUDA_VISIBLE_DEVICES`` as NVML maps it. Anything that would initialise
    CUDA (``torch.cuda._lazy_init``) is counted in ``lazy_inits`` and fails the call.
    """

    def install(
        count: int = 2,
        capability: tuple[int, int] = (8, 0),
        name: str = "NVIDIA Fake A100",
        nvml_works: bool = True,
    ) -> FakeMachine:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # tests that need a mask set their own
        gpus = tuple(GpuInfo(i, name, f"GPU-{i:04d}aaaa-fake", capability) for i in range(count))
        machine = FakeMachine(gpus)

        def visible_count() -> int:
            if nvml_works:
                return len(nvml.visible_gpus() or [])
            return count

        def is_available() -> bool:
            machine.availability_checks.append(os.environ.get(NVML_CHECK_ENV))
            return visible_count() > 0

        def lazy_init() -> None:
            machine.lazy_inits += 1
            raise AssertionError("CUDA was initialised in the process that resolves Fabric(...)")

        monkeypatch.setattr(nvml, "physical_gpus", (lambda: gpus) if nvml_works else (lambda: None))
        monkeypatch.setattr(torch.cuda, "device_count", visible_count)
        monkeypatch.setattr(torch.cuda, "is_available", is_available)
        monkeypatch.setattr(torch.cuda, "_lazy_init", lazy_init)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: machine.set_devices.append(torch.device(device)))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        return machine

    return install
