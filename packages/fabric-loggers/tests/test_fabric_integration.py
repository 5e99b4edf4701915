"""The loggers inside Fabric: selected by name, fed by fabric.log, finalised at the end of a launched run."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from fabric_core import Fabric
from fabric_core.plugins import get_registries
from fabric_loggers import CSVLogger, TensorBoardLogger

needs_tensorboard = pytest.mark.skipif(find_spec("tensorboard") is None, reason="tensorboard is not installed")


def test_the_plugin_registers_both_names_for_fabric_loggers():
    registry = get_registries().loggers
    for name, target in (
        ("csv", "fabric_loggers.csv_logs:CSVLogger"),
        ("tensorboard", "fabric_loggers.tensorboard:TensorBoardLogger"),
    ):
        entry = registry.get(name)
        assert entry.distribution == "fabric-loggers"
        assert entry.target == target
        assert entry.init_kwargs == {"root_dir": "logs"}
        assert entry.description


def test_the_plugin_module_imports_neither_logger_nor_torch():
    code = (
        "import sys, fabric_loggers.plugin, fabric_loggers; "
        "print([m for m in ('torch', 'tensorboard', 'fabric_loggers.csv_logs') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_csv_by_name_writes_under_logs_in_the_working_directory(tmp_path, monkeypatch, read_csv):
    monkeypatch.chdir(tmp_path)
    fabric = Fabric(accelerator="cpu", loggers="csv")
    assert isinstance(fabric.logger, CSVLogger)
    assert not (tmp_path / "logs").exists()  # nothing before the first write
    fabric.log("loss", 0.5)
    fabric.log_dict({"loss": 0.25, "acc": 0.75}, step=5)
    fabric.logger.finalize("success")
    header, rows = read_csv(tmp_path / "logs" / "fabric_logs" / "version_0" / "metrics.csv")
    assert header == ["acc", "loss", "step"]
    assert rows == [["", "0.5", "0"], ["0.75", "0.25", "5"]]


@needs_tensorboard
def test_names_and_objects_mix_in_one_list(tmp_path, monkeypatch, read_csv):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    tensorboard = TensorBoardLogger(tmp_path / "tb", name="run")
    fabric = Fabric(accelerator="cpu", loggers=["csv", tensorboard])
    assert isinstance(fabric.loggers[0], CSVLogger) and fabric.loggers[1] is tensorboard
    for step in range(3):
        fabric.log_dict({"loss": 1.0 / (step + 1)}, step=step)
    for logger in fabric.loggers:
        logger.finalize("success")
    _, rows = read_csv(tmp_path / "logs" / "fabric_logs" / "version_0" / "metrics.csv")
    assert [row[1] for row in rows] == ["0", "1", "2"]
    events = EventAccumulator(tensorboard.log_dir)
    events.Reload()
    assert [(e.step, round(e.value, 3)) for e in events.Scalars("loss")] == [(0, 1.0), (1, 0.5), (2, 0.333)]


@needs_tensorboard
def test_tensorboard_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    logger = Fabric(accelerator="cpu", loggers="tensorboard").logger
    assert isinstance(logger, TensorBoardLogger)
    assert logger.log_dir == str(Path("logs", "fabric_logs", "version_0"))


def test_tensorboard_by_name_without_tensorboard_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "fabric-loggers\[tensorboard\]"'):
        Fabric(accelerator="cpu", loggers="tensorboard")


def test_loggers_are_finalised_when_a_launched_run_ends(tmp_path, read_csv):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1000)
    fabric = Fabric(accelerator="cpu", loggers=logger)

    def train(fabric):
        for step in range(3):
            fabric.log("loss", float(step))

    fabric.launch(train)
    metrics_file = Path(logger.log_dir) / "metrics.csv"
    assert not metrics_file.exists()  # still in memory: under the flush threshold
    fabric.teardown()  # what atexit runs when the process ends
    assert len(read_csv(metrics_file)[1]) == 3


def test_a_script_that_launches_and_exits_leaves_every_row(tmp_path, run_script, read_csv):
    result = run_script("launch_and_exit.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, rows = read_csv(tmp_path / "logs" / "fabric_logs" / "version_0" / "metrics.csv")
    assert header == ["loss", "step"]
    assert len(rows) == 5


@pytest.mark.slow
def test_a_two_process_ddp_run_writes_one_version_from_rank_zero(tmp_path, run_script, read_csv):
    with_tensorboard = find_spec("tensorboard") is not None
    result = run_script("ddp_log.py", str(int(with_tensorboard)), cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rank 0 done" in result.stdout and "rank 1 done" in result.stdout
    runs = tmp_path / "logs" / "fabric_logs"
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    assert sorted(p.name for p in (runs / "version_0").iterdir()) == ["hparams.yaml", "metrics.csv"]
    header, rows = read_csv(runs / "version_0" / "metrics.csv")
    assert header == ["loss", "rank", "step"]
    assert [row[1:] for row in rows] == [["0", "0"], ["0", "1"], ["0", "2"]]
    if with_tensorboard:
        versions = list((tmp_path / "tb" / "fabric_logs").iterdir())
        assert [p.name for p in versions] == ["version_0"]
        event_files = [p for p in versions[0].iterdir() if p.name.startswith("events.out.tfevents")]
        assert len(event_files) == 1
