"""Seeding as Lightning does it: what seed_everything accepts, prints and warns, and Lightning's worker seeds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import fabric_core.utilities as utilities
from fabric_core.utilities.seed import (
    _worker_seeds,
    max_seed_value,
    min_seed_value,
    pl_worker_init_function,
    seed_everything,
    worker_init_function,
)


@pytest.fixture(autouse=True)
def _no_lightning_seed(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "PL_", "RANK", "LOCAL_RANK"))}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=clean)


# -- what seed_everything prints ----------------------------------------------------------------------


def test_seed_set_is_printed_to_stderr_without_any_logging_setup():
    result = run_python("from fabric_core import seed_everything; seed_everything(42)")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "Seed set to 42\n"
    assert result.stdout == ""


def test_a_launched_process_prefixes_its_rank():
    result = run_python("from fabric_core import seed_everything; seed_everything(42)", RANK="1")
    assert result.stderr == "[rank: 1] Seed set to 42\n"


def test_nothing_is_printed_when_quiet():
    result = run_python("from fabric_core import seed_everything; seed_everything(42, verbose=False)")
    assert result.stderr == ""


def test_a_level_the_program_set_on_the_fabric_core_logger_is_respected():
    code = (
        "import logging; logging.getLogger('fabric_core').setLevel(logging.WARNING)\n"
        "from fabric_core import seed_everything; seed_everything(42)"
    )
    assert run_python(code).stderr == ""


def test_the_message_goes_through_the_programs_own_logging_when_configured():
    code = (
        "import logging, sys; logging.basicConfig(stream=sys.stdout, format='%(name)s|%(message)s')\n"
        "from fabric_core import seed_everything; seed_everything(7)"
    )
    result = run_python(code)
    assert result.stdout == "fabric_core.utilities.seed|Seed set to 7\n"
    assert result.stderr == ""


def test_the_seed_message_is_an_info_record_of_the_fabric_core_logger(caplog, monkeypatch):
    monkeypatch.setenv("RANK", "2")
    with caplog.at_level("INFO", logger="fabric_core"):
        seed_everything(5)
    [record] = [r for r in caplog.records if "Seed set" in r.getMessage()]
    assert record.getMessage() == "[rank: 2] Seed set to 5"
    assert record.levelname == "INFO"
    assert record.name.startswith("fabric_core")


# -- what seed_everything accepts ---------------------------------------------------------------------


def test_without_a_seed_anywhere_it_warns_and_uses_0():
    with pytest.warns(UserWarning, match="No seed found, seed set to 0"):
        assert seed_everything() == 0


def test_without_a_seed_and_quiet_there_is_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert seed_everything(verbose=False) == 0


def test_an_exported_seed_needs_no_warning(monkeypatch):
    monkeypatch.setenv("FABRIC_GLOBAL_SEED", "11")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert seed_everything() == 11


def test_lightnings_variable_is_read_when_ours_is_not_set(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "123")
    assert seed_everything(verbose=False) == 123
    assert os.environ["FABRIC_GLOBAL_SEED"] == "123"


def test_our_variable_wins_over_lightnings(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "123")
    monkeypatch.setenv("FABRIC_GLOBAL_SEED", "4")
    assert seed_everything(verbose=False) == 4


def test_a_bad_lightning_variable_is_named(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "seven")
    with pytest.raises(ValueError, match=r"PL_GLOBAL_SEED='seven' is not an integer seed"):
        seed_everything(verbose=False)


def test_a_float_seed_seeds_as_its_integer_part():
    assert seed_everything(3.9, verbose=False) == 3
    first = torch.rand(1)
    seed_everything(3, verbose=False)
    assert torch.equal(torch.rand(1), first)


def test_a_numeric_string_is_a_seed():
    assert seed_everything("17", verbose=False) == 17


@pytest.mark.parametrize("seed", [2.0**32, -1.5])
def test_a_float_out_of_range_is_a_value_error(seed):
    with pytest.raises(ValueError, match=r"out of range: a seed must lie in \[0, 4294967295\]"):
        seed_everything(seed, verbose=False)


def test_an_infinite_seed_is_an_overflow_error_as_with_int():
    with pytest.raises(OverflowError, match=r"seed=inf\) needs an integer"):
        seed_everything(float("inf"), verbose=False)


def test_the_bounds_have_lightnings_names():
    assert (min_seed_value, max_seed_value) == (0, 4294967295)


# -- worker seeds ---------------------------------------------------------------------------------------


def test_pl_worker_init_function_is_our_worker_init_function():
    assert pl_worker_init_function is worker_init_function
    assert utilities.pl_worker_init_function is worker_init_function


def test_the_derived_seeds_are_lightnings():
    # Lightning 2.6's _generate_seed_sequence(1000, 1, 2, count=4)
    assert _worker_seeds(1000, 1, 2, count=4) == [
        17732142193844449602,
        17416950867138815643,
        2971162869639687744,
        16883702341992046913,
    ]


@pytest.mark.parametrize(
    ("base_seed", "worker_id", "rank", "torch_seed", "python_draw", "numpy_draw"),
    [
        # what the same calls give under Lightning 2.6's pl_worker_init_function
        (1000, 1, 2, 17732142193844449602, 0.35957009698365994, 0.22825581648158666),
        (7, 0, 0, 10343495699205108082, 0.07508438808305518, 0.25468222486822634),
    ],
)
def test_a_worker_draws_what_it_draws_under_lightning(base_seed, worker_id, rank, torch_seed, python_draw, numpy_draw):
    torch.manual_seed(base_seed + worker_id)  # what the DataLoader does in a worker before calling the hook
    pl_worker_init_function(worker_id, rank=rank)
    assert torch.initial_seed() == torch_seed
    assert random.random() == python_draw
    assert float(np.random.rand()) == numpy_draw


def test_the_rank_defaults_to_the_process_rank(monkeypatch):
    from fabric_core.utilities.rank_zero import rank_zero_state

    rank_zero_state.rank = 2  # the root conftest restores it
    torch.manual_seed(1001)
    worker_init_function(1)
    assert torch.initial_seed() == 17732142193844449602  # the (1000, 1, rank 2) seed above
