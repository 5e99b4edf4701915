"""Loggers inside Fabric: rank zero alone is logged from, finalize says how the run ended, and the kit checks both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from fabric_core import Fabric
from fabric_core.loggers import Logger
from fabric_core.testing import LoggerConformance
from fabric_core.utilities.rank_zero import rank_zero_only, rank_zero_state

SCRIPTS = Path(__file__).parent / "scripts"


class JSONLinesLogger(Logger):
    """The smallest complete logger: buffered rows, flushed to ``root_dir/version_0/metrics.jsonl``."""

    name = "jsonl"
    version = 0

    def __init__(self, root_dir: str | os.PathLike) -> None:
        self._root_dir = os.fspath(root_dir)
        self._rows: list[dict[str, Any]] = []

    @property
    def root_dir(self) -> str:
        return self._root_dir

    @property
    def log_dir(self) -> str:
        return os.path.join(self._root_dir, "version_0")

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._rows.append({"step": step, **metrics})

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._rows.append({"hparams": dict(vars(params) if not isinstance(params, Mapping) else params)})

    @rank_zero_only
    def save(self) -> None:
        self._write_rows()

    def _write_rows(self) -> None:
        if not self._rows:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, "metrics.jsonl"), "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in self._rows)
        self._rows = []


class UnguardedLogger(JSONLinesLogger):
    """Writes on every rank: what the kit must catch."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._rows.append({"step": step, **metrics})

    def save(self) -> None:
        self._write_rows()


class TestJSONLinesLogger(LoggerConformance):
    logger_factory = JSONLinesLogger


class RecordingLogger(Logger):
    name = "recording"
    version = 0

    def __init__(self) -> None:
        self.metrics: list[tuple[dict[str, Any], int | None]] = []
        self.statuses: list[str] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def finalize(self, status: str) -> None:
        self.statuses.append(status)


@pytest.fixture
def rank_one():
    rank_zero_state.rank = 1  # the root conftest restores it


# -- rank semantics ------------------------------------------------------------------------------------------


def test_fabric_log_calls_the_loggers_on_global_rank_zero():
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", devices=1, loggers=logger)
    fabric.log("loss", torch.tensor(0.5), step=1)
    assert logger.metrics == [({"loss": 0.5}, 1)]


def test_fabric_log_and_log_dict_do_not_call_the_loggers_on_other_ranks(rank_one):
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", devices=1, loggers=logger)
    fabric.log("loss", 0.5, step=1)
    fabric.log_dict({"loss": torch.tensor(0.25), "acc": 0.75}, step=2)
    assert logger.metrics == []


def test_fabric_log_dict_checks_its_arguments_on_every_rank(rank_one):
    fabric = Fabric(accelerator="cpu", devices=1, loggers=RecordingLogger())
    with pytest.raises(ValueError, match=r"'loss' is a tensor of shape \(2,\)"):
        fabric.log_dict({"loss": torch.ones(2)})
    with pytest.raises(TypeError, match="needs a mapping"):
        fabric.log_dict([("loss", 1.0)])


def test_launch_makes_rank_zero_only_follow_the_strategy_rank(rank_one):
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", devices=1, loggers=logger)
    fabric.launch(lambda fabric: fabric.log("loss", 0.5))  # a single-device run is global rank 0
    fabric.teardown()
    assert rank_zero_state.rank == 0
    assert logger.metrics == [({"loss": 0.5}, None)]


# -- finalize status ------------------------------------------------------------------------------------------


def test_finalize_gets_success_when_a_launched_function_returns():
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", loggers=logger)
    fabric.launch(lambda fabric: None)
    fabric.teardown()
    assert logger.statuses == ["success"]


def test_finalize_gets_failed_when_a_launched_function_raises():
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", loggers=logger)

    def train(fabric):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        fabric.launch(train)
    fabric.teardown()
    assert logger.statuses == ["failed"]


def test_finalize_gets_failed_when_an_overridden_run_raises():
    logger = RecordingLogger()

    class MyFabric(Fabric):
        def run(self):
            raise KeyError("boom")

    fabric = MyFabric(accelerator="cpu", loggers=logger)
    with pytest.raises(KeyError):
        fabric.run()
    fabric.teardown()
    assert logger.statuses == ["failed"]


def test_finalize_gets_failed_when_teardown_runs_while_an_exception_propagates():
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", loggers=logger)
    fabric.launch()
    with pytest.raises(KeyError):
        try:
            raise KeyError("boom")
        finally:
            fabric.teardown()
    assert logger.statuses == ["failed"]


def test_finalize_gets_success_when_a_launched_function_exits_with_code_zero():
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", loggers=logger)

    def train(fabric):
        sys.exit(0)

    with pytest.raises(SystemExit):
        fabric.launch(train)
    fabric.teardown()
    assert logger.statuses == ["success"]


def test_an_exception_reported_before_the_run_does_not_fail_it(monkeypatch):
    # In an interactive session, sys.last_value keeps the last error shown, maybe long before the run.
    monkeypatch.setattr(sys, "last_value", KeyError("an earlier mistake"), raising=False)
    logger = RecordingLogger()
    fabric = Fabric(accelerator="cpu", loggers=logger)
    fabric.launch()
    fabric.teardown()
    assert logger.statuses == ["success"]


def _run_status_script(mode: str, tmp_path: Path, timeout: int = 120) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "MASTER_", "LOCAL_RANK", "RANK"))}
    env["FABRIC_STRICT_PLUGINS"] = "1"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "logger_status.py"), mode, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    status_file = tmp_path / "status"
    return result, status_file.read_text().split() if status_file.exists() else []


@pytest.mark.parametrize("mode", ["script-ok", "script-exit-0"])
def test_a_script_that_ends_normally_finalizes_with_success(tmp_path, mode):
    result, statuses = _run_status_script(mode, tmp_path)
    assert result.returncode == 0, result.stderr
    assert statuses == ["success"]


def test_a_script_ended_by_an_uncaught_exception_finalizes_with_failed(tmp_path):
    result, statuses = _run_status_script("script-raises", tmp_path)
    assert result.returncode == 1 and "uncaught in the script" in result.stderr
    assert statuses == ["failed"]


@pytest.mark.parametrize("mode", ["spawn-raises", "fork-raises"])
def test_a_worker_whose_function_raises_finalizes_with_failed(tmp_path, mode):
    result, statuses = _run_status_script(mode, tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "launch failed" in result.stdout
    assert statuses == ["failed"]


# -- the kit catches what breaks the contract ------------------------------------------------------------------


def test_the_kit_catches_a_logger_that_writes_on_other_ranks(tmp_path):
    class TestUnguarded(LoggerConformance):
        logger_factory = UnguardedLogger

    rank_zero_state.rank = 1  # the root conftest restores it
    with pytest.raises(AssertionError, match="rank 1 wrote"):
        TestUnguarded().test_on_another_rank_the_loggers_own_methods_write_nothing(tmp_path, None)


def test_the_kit_names_a_missing_factory(tmp_path):
    class TestNothing(LoggerConformance):
        pass

    with pytest.raises(TypeError, match="does not set `logger_factory`"):
        TestNothing().test_on_another_rank_the_loggers_own_methods_write_nothing(tmp_path, None)
