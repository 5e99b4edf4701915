"""CSVLogger: the file's header and rows, flushing, crashes, hyperparameters, versions and ranks."""

from __future__ import annotations

import os
import signal
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from fabric_loggers import CSVLogger, _files


def test_rows_and_header_match_what_was_logged(tmp_path, read_csv):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"loss": 0.5, "acc": 0.25}, step=0)
    logger.log_metrics({"loss": 0.25, "acc": 0.5}, step=1)
    logger.finalize("success")
    header, rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert header == ["acc", "loss", "step"]  # sorted by name, as Lightning writes them
    assert rows == [["0.25", "0.5", "0"], ["0.5", "0.25", "1"]]


def test_a_key_that_appears_mid_run_widens_the_header_and_pads_earlier_rows(tmp_path, read_csv):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=2)
    logger.log_metrics({"loss": 1.0})
    logger.log_metrics({"loss": 0.5})  # flushed here: header loss, step
    logger.log_metrics({"loss": 0.25, "val_acc": 0.75})
    logger.log_metrics({"lr": 0.1})
    logger.save()
    header, rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert header == ["loss", "lr", "step", "val_acc"]  # sorted by name, as Lightning writes them
    assert rows == [
        ["1.0", "", "0", ""],
        ["0.5", "", "1", ""],
        ["0.25", "", "2", "0.75"],
        ["", "0.1", "3", ""],
    ]


def test_rows_under_a_known_header_are_appended(tmp_path, read_csv):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"a": 1, "b": 2})
    logger.log_metrics({"b": 3})
    header, rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert header == ["a", "b", "step"]
    assert rows == [["1", "2", "0"], ["", "3", "1"]]


def test_step_counts_log_calls_when_not_given(tmp_path, read_csv):
    logger = CSVLogger(tmp_path)
    for value in range(3):
        logger.log_metrics({"x": value})
    logger.log_metrics({"x": 9}, step=100)
    logger.save()
    header, rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert [row[header.index("step")] for row in rows] == ["0", "1", "2", "100"]


def test_prefix_is_joined_with_a_dash(tmp_path, read_csv):
    logger = CSVLogger(tmp_path, prefix="train")
    logger.log_metrics({"loss": 1.0})
    logger.save()
    header, _ = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert header == ["step", "train-loss"]


def test_tensors_and_numpy_values_are_written_as_numbers(tmp_path, read_csv):
    np = pytest.importorskip("numpy")
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"t": torch.tensor(0.5), "i": torch.tensor([3]), "n": np.float64(0.25), "k": np.int64(7)})
    logger.save()
    header, rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert header == ["i", "k", "n", "step", "t"]
    assert rows == [["3", "7", "0.25", "0", "0.5"]]


def test_a_metric_that_is_not_a_number_is_refused_with_its_name(tmp_path):
    logger = CSVLogger(tmp_path)
    with pytest.raises(TypeError, match=r"'name'.*log a number"):
        logger.log_metrics({"name": "adam"})
    with pytest.raises(ValueError, match=r"'vec' has shape \(3,\).*\.mean\(\)"):
        logger.log_metrics({"vec": torch.ones(3)})
    with pytest.raises(TypeError, match="step must be an int"):
        logger.log_metrics({"x": 1.0}, step=1.5)
    assert not os.listdir(tmp_path)


def test_rows_are_kept_in_memory_until_the_threshold(tmp_path, read_csv):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=3)
    metrics_file = Path(logger.log_dir) / "metrics.csv"
    logger.log_metrics({"x": 0})
    logger.log_metrics({"x": 1})
    assert not metrics_file.exists()
    logger.log_metrics({"x": 2})
    assert len(read_csv(metrics_file)[1]) == 3
    logger.log_metrics({"x": 3})
    assert len(read_csv(metrics_file)[1]) == 3
    logger.finalize("success")
    assert len(read_csv(metrics_file)[1]) == 4


def test_finalize_is_idempotent_and_logging_goes_on_afterwards(tmp_path, read_csv):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"x": 0})
    logger.finalize("success")
    logger.finalize("success")
    logger.log_metrics({"x": 1})
    logger.finalize("success")
    _, rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert rows == [["0", "0"], ["1", "1"]]


def test_finalize_without_anything_logged_creates_nothing(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.save()
    logger.finalize("success")
    assert not os.listdir(tmp_path)


def test_a_killed_process_leaves_the_flushed_rows_in_a_well_formed_file(tmp_path, read_csv, run_script):
    # 10 rows, flushed every 4 (a new column arrives in row 6), then SIGKILL: rows 0-7 must be there.
    result = run_script("csv_killed.py", str(tmp_path), cwd=tmp_path)
    assert result.returncode == -signal.SIGKILL, result.stderr
    header, rows = read_csv(tmp_path / "fabric_logs" / "version_0" / "metrics.csv")
    assert header == ["loss", "lr", "step"]
    assert [row[2] for row in rows] == [str(i) for i in range(8)]
    assert all(len(row) == 3 for row in rows)
    assert rows[6] == ["0.6", "0.01", "6"]
    assert [p.name for p in (tmp_path / "fabric_logs" / "version_0").iterdir()] == ["metrics.csv"]


def test_a_failed_header_rewrite_leaves_the_previous_file(tmp_path, monkeypatch):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"loss": 1.0})
    metrics_file = Path(logger.log_dir) / "metrics.csv"
    before = metrics_file.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(_files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        logger.log_metrics({"loss": 0.5, "acc": 0.1})
    assert metrics_file.read_bytes() == before
    assert os.listdir(logger.log_dir) == ["metrics.csv"]  # no temporary file left behind


def test_hyperparameters_go_to_hparams_yaml(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.001, "optimizer": {"name": "Adam", "betas": [0.9, 0.999]}})
    logger.log_hyperparams(Namespace(batch_size=32, lr=0.01))
    text = (Path(logger.log_dir) / "hparams.yaml").read_text()
    assert text == "lr: 0.01\noptimizer:\n  name: Adam\n  betas:\n    - 0.9\n    - 0.999\nbatch_size: 32\n"


def test_hyperparameters_of_the_wrong_type_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"got list.*pass a dict"):
        CSVLogger(tmp_path).log_hyperparams([("lr", 1)])


def test_versions_increment_across_loggers_in_the_same_root(tmp_path):
    versions = []
    for _ in range(3):
        logger = CSVLogger(tmp_path, name="exp")
        logger.log_metrics({"x": 1.0})
        logger.finalize("success")
        versions.append(logger.version)
    assert versions == [0, 1, 2]
    assert sorted(os.listdir(tmp_path / "exp")) == ["version_0", "version_1", "version_2"]


def test_the_next_version_follows_the_highest_and_ignores_other_folders(tmp_path):
    for folder in ("version_3", "version_x", "other", "version_10"):
        (tmp_path / "fabric_logs" / folder).mkdir(parents=True)
    (tmp_path / "fabric_logs" / "version_99").write_text("a file, not a run")
    assert CSVLogger(tmp_path).version == 11


def test_an_explicit_version_int_or_string(tmp_path):
    by_int = CSVLogger(tmp_path, name="exp", version=7)
    by_str = CSVLogger(tmp_path, name="exp", version="baseline")
    assert by_int.version == 7
    assert by_int.log_dir == os.path.join(str(tmp_path), "exp", "version_7")
    assert by_str.version == "baseline"
    assert by_str.log_dir == os.path.join(str(tmp_path), "exp", "baseline")


def test_properties_and_no_directory_before_the_first_write(tmp_path):
    logger = CSVLogger(tmp_path / "root", name="exp")
    assert logger.name == "exp"
    assert logger.root_dir == str(tmp_path / "root")
    assert logger.version == 0
    assert logger.log_dir == str(tmp_path / "root" / "exp" / "version_0")
    assert not (tmp_path / "root").exists()


def test_an_empty_name_puts_versions_directly_under_root_dir(tmp_path):
    logger = CSVLogger(tmp_path, name=None)
    assert logger.name == ""
    assert logger.log_dir == os.path.join(str(tmp_path), "version_0")


def test_reusing_a_version_with_a_metrics_file_warns(tmp_path):
    first = CSVLogger(tmp_path, version=0)
    first.log_metrics({"x": 1})
    first.finalize("success")
    second = CSVLogger(tmp_path, version=0)
    with pytest.warns(UserWarning, match="already holds a metrics.csv"):
        second.log_metrics({"y": 2})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"root_dir": 3}, TypeError, "root_dir=3"),
        ({"version": -1}, ValueError, "0 or more"),
        ({"version": 1.5}, TypeError, "version=1.5"),
        ({"version": True}, TypeError, "version=True"),
        ({"prefix": None}, TypeError, "prefix=None"),
        ({"flush_logs_every_n_steps": 0}, ValueError, "flush_logs_every_n_steps=0"),
    ],
)
def test_bad_arguments_are_refused_with_the_value(tmp_path, kwargs, error, match):
    kwargs = {"root_dir": tmp_path, **kwargs}
    with pytest.raises(error, match=match):
        CSVLogger(**kwargs)


def test_other_ranks_write_nothing(tmp_path, rank_one):
    (tmp_path / "fabric_logs" / "version_0").mkdir(parents=True)
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"x": 1.0})
    logger.log_hyperparams({"lr": 0.1})
    logger.experiment.anything("goes")
    logger.save()
    logger.finalize("success")
    assert logger.version == 1  # read, never created
    assert os.listdir(tmp_path / "fabric_logs") == ["version_0"]
    assert not os.listdir(tmp_path / "fabric_logs" / "version_0")
