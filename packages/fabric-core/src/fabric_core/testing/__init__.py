"""Conformance tests for plugin authors: subclass one in your own pytest suite to check your plugin.

Each class is a set of pytest tests that any accelerator, precision, strategy, cluster environment or
logger must pass; fabric-core's built-ins pass the same tests. The classes' names do not start with ``Test``,
so pytest runs them only through your subclass, which names what to check with a class attribute::

    # tests/test_conformance.py of your plugin
    import functools

    from fabric_core.testing import (
        AcceleratorConformance,
        ClusterEnvironmentConformance,
        LoggerConformance,
        PrecisionConformance,
        StrategyConformance,
    )

    from my_plugin import MyAccelerator, MyEnvironment, MyLogger, MyPrecision, MyStrategy


    class TestMyAccelerator(AcceleratorConformance):
        accelerator_cls = MyAccelerator  # the class; checks needing the device skip where it is absent


    class TestMyPrecision(PrecisionConformance):
        precision_factory = functools.partial(MyPrecision, "fp8-mixed")  # any zero-argument callable
        device = "cuda"  # where the training checks run (default "cpu"); they skip where it is absent


    class TestMyStrategy(StrategyConformance):
        strategy_factory = MyStrategy  # picklable; checked on 1 process and on 2 (`processes = 1` opts out)


    class TestMyEnvironment(ClusterEnvironmentConformance):
        environment_factory = MyEnvironment
        environment_variables = {"MY_JOB_ID": "17", "MY_RANK": "0", "MY_WORLD_SIZE": "1"}


    class TestMyLogger(LoggerConformance):
        logger_factory = MyLogger  # called with a fresh directory when it takes an argument: MyLogger(tmp_path)

Run them with ``pytest``; each check is one test named for the behaviour it expects
(``test_parse_devices_rejects_a_bad_value_with_value_or_type_error['nonsense']``, ...), so a failure
says what your plugin does differently. To skip a check that does not apply, override it in your
subclass with a test that calls ``pytest.skip("why")``; to add a check, add a ``test_`` method.

These modules import pytest; ``import fabric_core`` never imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.testing.accelerator import AcceleratorConformance
    from fabric_core.testing.environment import ClusterEnvironmentConformance
    from fabric_core.testing.logger import LoggerConformance
    from fabric_core.testing.precision import PrecisionConformance
    from fabric_core.testing.strategy import StrategyConformance

__all__ = [
    "AcceleratorConformance",
    "ClusterEnvironmentConformance",
    "LoggerConformance",
    "PrecisionConformance",
    "StrategyConformance",
]

# Importing the package stays free of pytest; the class you ask for brings it in.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AcceleratorConformance": "fabric_core.testing.accelerator",
        "ClusterEnvironmentConformance": "fabric_core.testing.environment",
        "LoggerConformance": "fabric_core.testing.logger",
        "PrecisionConformance": "fabric_core.testing.precision",
        "StrategyConformance": "fabric_core.testing.strategy",
    },
)
