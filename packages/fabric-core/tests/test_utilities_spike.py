"""SpikeDetection: when a loss is a spike, what every rank does then, and the file of batches to skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch

from fabric_core import Fabric
from fabric_core.utilities.spike import SpikeDetection, TrainingSpikeException


@pytest.fixture
def fabric():
    return Fabric(accelerator="cpu", devices=1)


def feed(detector: SpikeDetection, fabric, losses) -> int | None:
    """The batch index of the first spike, or None."""
    for batch_idx, loss in enumerate(losses):
        try:
            detector.on_train_batch_end(fabric, torch.tensor(float(loss)), None, batch_idx)
        except TrainingSpikeException as spike:
            return spike.batch_idx
    return None


# 4, 3, 2 improve. 2.5 is worse than 2 but only 0.5 from the mean 3.0 (needs 2 x 3.0). The mean of the
# first four is 2.875, so the next loss is a spike from 2.875 + 2 x 2.875 = 8.625 on.
LOSSES = [4, 3, 2, 2.5]


def test_a_loss_far_above_the_running_mean_is_a_spike(fabric, tmp_path):
    assert feed(SpikeDetection(exclude_batches_path=tmp_path), fabric, [*LOSSES, 8.7]) == 4


def test_a_loss_just_below_the_relative_tolerance_is_no_spike(fabric, tmp_path):
    assert feed(SpikeDetection(exclude_batches_path=tmp_path), fabric, [*LOSSES, 8.6]) is None


def test_an_improvement_is_never_a_spike(fabric, tmp_path):
    assert feed(SpikeDetection(rtol=None, exclude_batches_path=tmp_path), fabric, [5, 4, 3, 2, 1]) is None


def test_without_tolerances_any_loss_worse_than_the_previous_is_a_spike(fabric, tmp_path):
    assert feed(SpikeDetection(rtol=None, exclude_batches_path=tmp_path), fabric, [5, 4, 4.01]) == 2


def test_the_absolute_tolerance(fabric, tmp_path):
    detector = SpikeDetection(atol=1.0, rtol=None, exclude_batches_path=tmp_path)
    assert feed(detector, fabric, [5, 5, 5.5]) is None  # 0.5 from the mean 5
    assert feed(SpikeDetection(atol=1.0, rtol=None, exclude_batches_path=tmp_path), fabric, [5, 5, 6.5]) == 2


def test_both_tolerances_must_be_exceeded(fabric, tmp_path):
    # 6.5 is 1.5 from the mean 5: above atol=1, below rtol=0.5 x 5 = 2.5
    assert feed(SpikeDetection(atol=1.0, rtol=0.5, exclude_batches_path=tmp_path), fabric, [5, 5, 6.5]) is None
    assert feed(SpikeDetection(atol=1.0, rtol=0.5, exclude_batches_path=tmp_path), fabric, [5, 5, 7.5]) == 2


def test_max_mode_looks_for_drops(fabric, tmp_path):
    # the mean of 1, 2, 3 is 2; 0.1 is 1.9 below it, more than 0.5 x 2
    assert feed(SpikeDetection(mode="max", rtol=0.5, exclude_batches_path=tmp_path), fabric, [1, 2, 3, 0.1]) == 3
    # in min mode the rise from 1 to 2 (1 above the mean 1) is the spike
    assert feed(SpikeDetection(mode="min", rtol=0.5, exclude_batches_path=tmp_path), fabric, [1, 2, 3, 0.1]) == 1


def test_the_window_limits_the_running_mean(fabric, tmp_path):
    # with window=2 the mean before the last loss is (1 + 1) / 2 = 1, not pulled up by the 100 at the start
    detector = SpikeDetection(window=2, warmup=2, rtol=1.0, exclude_batches_path=tmp_path)
    assert feed(detector, fabric, [100, 1, 1, 2.5]) == 3


def test_batches_before_warmup_are_never_spikes(fabric, tmp_path):
    assert feed(SpikeDetection(warmup=3, exclude_batches_path=tmp_path), fabric, [1, 100, 1, 1]) is None
    assert feed(SpikeDetection(warmup=1, exclude_batches_path=tmp_path), fabric, [1, 100]) == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_loss_is_a_spike_with_finite_only(fabric, tmp_path, bad):
    assert feed(SpikeDetection(exclude_batches_path=tmp_path), fabric, [3, 2, bad]) == 2


def test_without_finite_only_a_non_finite_loss_is_skipped_by_the_running_mean(fabric, tmp_path):
    detector = SpikeDetection(finite_only=False, exclude_batches_path=tmp_path)
    assert feed(detector, fabric, [3, 2, float("nan")]) is None
    assert detector.last_val.item() == 2.0
    assert detector.running_mean.compute().item() == 2.5


# -- the exception and the file --------------------------------------------------------------------------


def test_the_exception_names_the_batch_and_is_a_runtime_error(fabric, tmp_path):
    detector = SpikeDetection(exclude_batches_path=tmp_path)
    feed(detector, fabric, LOSSES)
    with pytest.raises(TrainingSpikeException, match="Training spike detected in batch 4") as caught:
        detector.on_train_batch_end(fabric, torch.tensor(50.0), None, 4)
    assert isinstance(caught.value, RuntimeError)
    assert caught.value.batch_idx == 4
    assert detector.bad_batches == [3, 4]


def test_the_spike_and_the_batch_before_it_are_written_to_skip_batches_json(fabric, tmp_path):
    feed(SpikeDetection(exclude_batches_path=tmp_path / "run"), fabric, [*LOSSES, 50])
    assert json.loads((tmp_path / "run" / "skip_batches.json").read_text()) == [3, 4]


def test_later_spikes_add_to_the_file(fabric, tmp_path):
    detector = SpikeDetection(exclude_batches_path=tmp_path)
    assert feed(detector, fabric, [*LOSSES, 50]) == 4
    for batch_idx, loss in ((5, 2.4), (6, 2.3)):
        detector.on_train_batch_end(fabric, torch.tensor(loss), None, batch_idx)
    with pytest.raises(TrainingSpikeException):
        detector.on_train_batch_end(fabric, torch.tensor(60.0), None, 7)
    assert json.loads((tmp_path / "skip_batches.json").read_text()) == [3, 4, 6, 7]


def test_a_path_ending_in_json_is_the_file_itself(fabric, tmp_path):
    target = tmp_path / "deep" / "skips.json"
    feed(SpikeDetection(exclude_batches_path=str(target)), fabric, [*LOSSES, 50])
    assert json.loads(target.read_text()) == [3, 4]


def test_the_file_goes_to_the_working_directory_by_default(fabric, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    detector = SpikeDetection()
    feed(detector, fabric, [*LOSSES, 50])
    assert json.loads((tmp_path / "skip_batches.json").read_text()) == [3, 4]
    assert detector.exclude_batches_path == os.path.join(str(tmp_path), "skip_batches.json")


class FakeStrategy:
    """Records the collectives; ``others_spiked`` is what the other ranks report."""

    def __init__(self, others_spiked: bool = False) -> None:
        self.others_spiked = others_spiked
        self.calls: list[tuple] = []

    def barrier(self, name=None):
        self.calls.append(("barrier",))

    def reduce_boolean_decision(self, decision, all=True):
        self.calls.append(("reduce", decision, all))
        return decision if all else decision or self.others_spiked


def test_a_spike_on_another_rank_stops_this_one_too(tmp_path):
    fabric = types.SimpleNamespace(strategy=FakeStrategy(others_spiked=True), global_rank=1)
    detector = SpikeDetection(exclude_batches_path=tmp_path)
    with pytest.raises(TrainingSpikeException, match="batch 0"):
        detector.on_train_batch_end(fabric, torch.tensor(1.0), None, 0)
    assert fabric.strategy.calls == [("barrier",), ("reduce", False, False)]
    assert not (tmp_path / "skip_batches.json").exists()  # only rank 0 writes it
    assert detector.bad_batches == [-1, 0]


def test_without_finite_only_the_ranks_agree_on_updating_the_mean(tmp_path):
    fabric = types.SimpleNamespace(strategy=FakeStrategy(), global_rank=0)
    SpikeDetection(finite_only=False, exclude_batches_path=tmp_path).on_train_batch_end(
        fabric, torch.tensor(1.0), None, 0
    )
    assert fabric.strategy.calls == [("barrier",), ("reduce", False, False), ("reduce", True, True)]


def test_two_ranks_stop_together_and_rank_zero_writes_the_file(tmp_path, free_port):
    script = tmp_path / "spike_two_ranks.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from datetime import timedelta

            import torch

            from fabric_core import Fabric
            from fabric_core.strategies import DDPStrategy
            from fabric_core.utilities import SpikeDetection, TrainingSpikeException

            fabric = Fabric(accelerator="cpu", devices=2, strategy=DDPStrategy(timeout=timedelta(seconds=60)))
            fabric.launch()
            rank = fabric.global_rank
            # only rank 1 spikes, at batch 4; rank 0 keeps improving
            losses = [4, 3, 2, 2.5, 9.0, 2.0] if rank == 1 else [4, 3, 2, 2.5, 2.4, 2.3]
            detector = SpikeDetection(exclude_batches_path=sys.argv[1])
            try:
                for batch_idx, loss in enumerate(losses):
                    detector.on_train_batch_end(fabric, torch.tensor(loss), None, batch_idx)
            except TrainingSpikeException as spike:
                print(f"rank {rank} stopped at batch {spike.batch_idx}", flush=True)
            else:
                print(f"rank {rank} did not stop", flush=True)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "MASTER_", "LOCAL_RANK", "RANK"))}
    env.update(FABRIC_STRICT_PLUGINS="1", MASTER_PORT=str(free_port))
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "skips")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rank 0 stopped at batch 4" in result.stdout
    assert "rank 1 stopped at batch 4" in result.stdout
    assert json.loads((tmp_path / "skips" / "skip_batches.json").read_text()) == [3, 4]


# -- state, arguments -------------------------------------------------------------------------------------


def test_state_dict_round_trip_keeps_the_history_and_the_decision(fabric, tmp_path):
    detector = SpikeDetection(exclude_batches_path=tmp_path, rtol=1.5)
    feed(detector, fabric, LOSSES)
    state = detector.state_dict()
    assert state["last_val"] == 2.5
    assert state["bad_batches"] == []
    assert state["mode"] == "min" and state["rtol"] == 1.5 and state["warmup"] == 1
    snapshot = json.loads(json.dumps(state))  # plain data: it can go into any checkpoint
    restored = SpikeDetection()
    restored.load_state_dict(snapshot)
    assert snapshot == json.loads(json.dumps(state))  # loading does not consume the dict
    # the mean is 2.875: 7.2 is 4.325 above it, at least 1.5 x 2.875 = 4.3125, so a spike for both
    for candidate in (detector, restored):
        with pytest.raises(TrainingSpikeException):
            candidate.on_train_batch_end(fabric, torch.tensor(7.2), None, 4)


def test_an_unknown_mode_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"mode='median'\): expected 'min'"):
        SpikeDetection(mode="median")  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [0, -1, 2.0])
def test_a_window_below_one_is_refused(window):
    with pytest.raises(ValueError, match=rf"window={window!r}\): expected an int of at least 1"):
        SpikeDetection(window=window)
