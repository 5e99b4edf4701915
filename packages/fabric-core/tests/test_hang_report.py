"""Hangs explain themselves: a timed-out collective says what every rank was doing, on every rank.

The two-rank tests start tests/scripts/ddp_hang_report.py once per rank (as ``fabric run`` would, gloo,
3 s collective timeout) and wait for both with a bound. The single-process tests check the pieces:
call sites, the wording of local errors, the opt-in check's switch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from fabric_core.strategies import DDPStrategy
from fabric_core.utilities import call_records, distributed
from fabric_core.utilities.distributed import DistributedError, run_collective

SCRIPT = Path(__file__).parent / "scripts" / "ddp_hang_report.py"
PROCESS_TIMEOUT = 120


def run_two_ranks(scenario: str, directory: Path, port: int, **extra_env: str) -> dict[int, str]:
    """Each rank's output for ``scenario``; both processes are ended if they outlive the bound."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "MASTER_", "LOCAL_RANK", "RANK"))}
    env.update(FABRIC_STRICT_PLUGINS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
    env.update(NODE_RANK="0", FABRIC_CLI_USED="1", OMP_NUM_THREADS="1", **extra_env)
    processes = {
        rank: subprocess.Popen(
            [sys.executable, str(SCRIPT), scenario, str(directory)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=SCRIPT.parent,  # call sites are shown relative to the working directory
        )
        for rank in (0, 1)
    }
    outputs = {}
    try:
        for rank, process in processes.items():
            outputs[rank] = process.communicate(timeout=PROCESS_TIMEOUT)[0]
    finally:
        for process in processes.values():
            process.kill()
            process.wait(10)
    return outputs


def line_of(marker: str) -> int:
    """The line of ddp_hang_report.py that carries ``marker`` in its comment."""
    lines = SCRIPT.read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if marker in line)


def site(marker: str) -> str:
    return f"{SCRIPT.name}:{line_of(marker)}"


@pytest.mark.parametrize("rank", [0, 1])
def test_a_mismatched_collective_names_both_ranks_operations_shapes_and_call_sites_on_each_rank(
    tmp_path, free_port, rank
):
    output = run_two_ranks("mismatch", tmp_path, free_port)[rank]
    assert f"CAUGHT rank {rank} DistributedError" in output, output
    assert "What each rank was doing:" in output
    assert f"rank 0: all_reduce(tensor float32[4], reduce_op='sum') at {site('[mismatch-0]')}" in output, output
    assert f"rank 1: barrier('epoch end') at {site('[mismatch-1]')}" in output, output


def test_ranks_that_time_out_at_different_moments_both_see_the_whole_mismatch(tmp_path, free_port):
    outputs = run_two_ranks("staggered", tmp_path, free_port)
    for rank in (0, 1):
        assert f"CAUGHT rank {rank} DistributedError" in outputs[rank], outputs
        assert (
            f"rank 0: all_gather(tensor int64[2, 3], sync_grads=False) at {site('[staggered-0]')}" in (outputs[rank])
        ), outputs[rank]
        assert f"rank 1: broadcast(src=1) at {site('[staggered-1]')}" in outputs[rank], outputs[rank]


def test_a_rank_outside_any_collective_is_reported_with_the_line_it_is_running(tmp_path, free_port):
    output = run_two_ranks("skipped", tmp_path, free_port)[0]
    assert "CAUGHT rank 0 DistributedError" in output, output
    assert f"rank 0: all_reduce(tensor float32[4], reduce_op='mean') at {site('[skipped-0]')}" in output, output
    expected = f"rank 1: not in a fabric collective: running {site('[skipped-1]')}"
    assert expected in output, output


def test_a_second_timeout_reports_the_new_calls_not_the_first_ones(tmp_path, free_port):
    outputs = run_two_ranks("twice", tmp_path, free_port)
    for rank in (0, 1):
        first, _, second = outputs[rank].partition(f"CAUGHT rank {rank}")
        assert "barrier('epoch end')" in first, outputs[rank]
        assert f"rank 0: broadcast(src=0) at {site('[twice-0]')}" in second, outputs[rank]
        assert f"rank 1: barrier('second') at {site('[twice-1]')}" in second, outputs[rank]
        assert "epoch end" not in second, outputs[rank]


def test_checked_collectives_give_the_right_values_and_stop_at_the_first_mismatch_on_every_rank(tmp_path, free_port):
    outputs = run_two_ranks("checked", tmp_path, free_port, FABRIC_CHECK_COLLECTIVES="1")
    for rank in (0, 1):
        output = outputs[rank]
        assert f"RESULT rank {rank} [3.0, 6.0] [[0, 10], [1, 11]] {{'from': 1}}" in output, output
        assert f"CAUGHT rank {rank} CollectiveMismatchError: FABRIC_CHECK_COLLECTIVES" in output, output
        assert f"rank 0: all_reduce(tensor float32[4], reduce_op='sum') at {site('[checked-0]')}" in (output)
        assert f"rank 1: all_reduce(tensor float32[5], reduce_op='sum') at {site('[checked-1]')}" in (output)
        assert "timed out" not in output  # raised before the collective, not after the timeout


def test_the_check_is_off_unless_the_environment_asks_for_it(monkeypatch):
    monkeypatch.delenv("FABRIC_CHECK_COLLECTIVES", raising=False)
    assert DDPStrategy()._check_collectives is False
    monkeypatch.setenv("FABRIC_CHECK_COLLECTIVES", "1")
    assert DDPStrategy()._check_collectives is True


def test_an_unknown_check_setting_is_refused_when_the_strategy_is_built(monkeypatch):
    monkeypatch.setenv("FABRIC_CHECK_COLLECTIVES", "sometimes")
    with pytest.raises(ValueError, match="FABRIC_CHECK_COLLECTIVES='sometimes' is not understood"):
        DDPStrategy(timeout=timedelta(seconds=5))


def _raise(message: str) -> None:
    raise RuntimeError(message)


def test_missing_numpy_says_to_install_it_and_blames_no_other_rank():
    with pytest.raises(ModuleNotFoundError, match="pip install numpy") as caught:
        run_collective("broadcast(src=0)", None, _raise, "Numpy is not available")
    assert "another rank" not in str(caught.value)
    assert "broadcast(src=0)" in str(caught.value)


def test_an_error_of_this_rank_alone_does_not_blame_the_other_ranks():
    with pytest.raises(DistributedError) as caught:
        run_collective("all_reduce(reduce_op='sum')", None, _raise, "Tensors must be contiguous")
    message = str(caught.value)
    assert "on this rank (not because of another rank): Tensors must be contiguous" in message
    assert "exited or crashed" not in message


def test_a_connection_closed_by_a_peer_is_blamed_on_another_rank():
    with pytest.raises(DistributedError, match="because of another rank: it exited, crashed"):
        run_collective("barrier()", None, _raise, "Connection closed by peer [127.0.0.1]:1234")


def _called_from_user_code() -> call_records.CallRecord:
    try:
        return call_records.begin("all_reduce", call_records.tensor_arg(torch.ones(2, 3)), ("reduce_op", "sum"))
    finally:
        call_records.end()


def test_a_record_names_the_callers_line_and_the_tensor_shape_and_dtype():
    record = _called_from_user_code()
    assert record.signature() == "all_reduce(tensor float32[2, 3], reduce_op='sum')"
    assert record.function == "_called_from_user_code"
    assert record.file == __file__


def test_ranks_doing_the_same_thing_share_one_line():
    lines = call_records.group_ranks({0: ("a", "x"), 1: ("a", "y"), 2: ("b", "z"), 3: ("a", "w"), 5: ("a", "")})
    assert lines == ["  ranks 0-1, 3, 5: a", "  rank 2: b [z]"]


def test_a_signature_survives_encoding_and_equal_signatures_have_equal_digests():
    record = _called_from_user_code()
    digest, text = call_records.decode(call_records.encode(record))
    assert len(call_records.encode(record)) == call_records.ENCODED_SIZE
    assert text == record.describe()
    assert digest == call_records.decode(call_records.encode(_called_from_user_code()))[0]


def test_collectives_are_unchecked_by_default():
    assert distributed._checks.enabled is False


def test_leaving_together_waits_for_every_rank_and_gives_up_after_its_timeout():
    import torch.distributed as dist

    from fabric_core.utilities.hang_report import Reporter

    store = dist.HashStore()
    first, second = Reporter(store, 0, 2, prefix="t"), Reporter(store, 1, 2, prefix="t")
    try:
        started = time.monotonic()
        assert first.leave_together("t/left", timeout=0.2) is False  # alone: gives up after the timeout
        assert 0.2 <= time.monotonic() - started < 2
        assert second.leave_together("t/left", timeout=0.2) is True  # the other rank already counted in
    finally:
        first.stop()
        second.stop()
    assert first.leave_together("t/after", timeout=5) is False  # stopped: no store call, no wait
