"""The strategy kit's two-process checks catch broken strategies, bounded in time, and say what is wrong."""

from __future__ import annotations

import time

import pytest

from fabric_core.strategies import DDPStrategy, SingleDeviceStrategy
from fabric_core.testing import StrategyConformance
from fabric_core.testing._two_processes import run_two_processes

pytestmark = pytest.mark.slow


class UnsynchronisedDDP(DDPStrategy):
    """Forgets to wrap the module: each rank trains on its own data alone."""

    def setup_module(self, module):
        return module


class HangingBarrierDDP(DDPStrategy):
    """Rank 0 never leaves the barrier."""

    def barrier(self, name=None):
        if self.global_rank == 0:
            time.sleep(3600)
        super().barrier(name)


def _run(factory, tmp_path, timeout=60.0):
    return run_two_processes(factory, "cpu", 3, tmp_path, timeout, modules=[__name__])


def test_a_strategy_that_does_not_synchronise_gradients_fails_the_training_check(tmp_path):
    run = _run(UnsynchronisedDDP, tmp_path)

    with pytest.raises(AssertionError, match="different outputs"):
        StrategyConformance().test_two_processes_train_identical_models_on_different_data(run)
    StrategyConformance().test_two_processes_all_reduce_sums_and_averages_over_the_ranks(run)


def test_a_hanging_strategy_fails_within_the_timeout_naming_where_each_rank_was(tmp_path):
    start = time.monotonic()
    run = _run(HangingBarrierDDP, tmp_path, timeout=10.0)

    assert time.monotonic() - start < 30
    with pytest.raises(AssertionError, match=r"rank 0 never finished the 'barrier' check \(it was in 'barrier'"):
        run.values("barrier")
    assert "did not finish within 10 s" in run.problem
    assert run.values("broadcast")  # what finished before the hang is still reported


def test_a_one_process_strategy_fails_setup_with_the_hint_to_opt_out(tmp_path):
    class TestOneProcess(StrategyConformance):
        strategy_factory = SingleDeviceStrategy

    run = _run(SingleDeviceStrategy, tmp_path)

    with pytest.raises(pytest.fail.Exception, match="set `processes = 1`"):
        TestOneProcess().test_two_processes_are_ranks_0_and_1_of_world_size_2(run)


def test_a_factory_that_cannot_be_pickled_is_refused_naming_it(tmp_path):
    with pytest.raises(TypeError, match=r"strategy_factory=.*lambda.*functools\.partial"):
        _run(lambda: DDPStrategy(), tmp_path)
