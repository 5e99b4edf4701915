"""fabric-core's own accelerators, precisions, strategies and environments pass the plugin conformance kit."""

from __future__ import annotations

import functools

from fabric_core.accelerators import CPUAccelerator, MPSAccelerator
from fabric_core.environments.local import LocalEnvironment
from fabric_core.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from fabric_core.strategies.ddp import DDPStrategy
from fabric_core.strategies.single_device import SingleDeviceStrategy
from fabric_core.testing import (
    AcceleratorConformance,
    ClusterEnvironmentConformance,
    PrecisionConformance,
    StrategyConformance,
)


class TestCPUAccelerator(AcceleratorConformance):
    accelerator_cls = CPUAccelerator


class TestMPSAccelerator(AcceleratorConformance):
    accelerator_cls = MPSAccelerator  # the device checks skip off Apple silicon


class TestFullPrecision(PrecisionConformance):
    precision_factory = Precision


class TestDoublePrecision(PrecisionConformance):
    precision_factory = DoublePrecision


class TestBFloat16TruePrecision(PrecisionConformance):
    precision_factory = functools.partial(HalfPrecision, "bf16-true")


class TestFloat16TruePrecision(PrecisionConformance):
    precision_factory = functools.partial(HalfPrecision, "16-true")


class TestBFloat16MixedPrecision(PrecisionConformance):
    precision_factory = functools.partial(MixedPrecision, "bf16-mixed", device="cpu")


class TestFloat16MixedPrecision(PrecisionConformance):
    # torch supports float16 autocast and the gradient scaler on the CPU.
    precision_factory = functools.partial(MixedPrecision, "16-mixed", device="cpu")


class TestSingleDeviceStrategy(StrategyConformance):
    strategy_factory = functools.partial(SingleDeviceStrategy, device="cpu")
    processes = 1  # one process on one device: the two-process checks do not apply


class TestDDPStrategy(StrategyConformance):
    # The one-process checks join a process group of one in the test process; the two-process checks
    # run ranks 0 and 1 over gloo.
    strategy_factory = DDPStrategy


class TestLocalEnvironment(ClusterEnvironmentConformance):
    environment_factory = LocalEnvironment
