"""TensorBoardLogger: event files read back with tensorboard's own reader; layout, versions, ranks."""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from fabric_loggers import TensorBoardLogger

needs_tensorboard = pytest.mark.skipif(find_spec("tensorboard") is None, reason="tensorboard is not installed")


def read_events(log_dir: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(log_dir)
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def hparams_plugin(accumulator, what: str):
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    return HParamsPluginData.FromString(accumulator.PluginTagToContent("hparams")[f"_hparams_/{what}"])


@needs_tensorboard
def test_scalars_are_read_back_with_their_steps(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"loss": 1.0, "acc": torch.tensor(0.25)}, step=0)
    logger.log_metrics({"loss": 0.5}, step=10)
    logger.log_metrics({"loss": 0.25})  # the third call: step 2
    logger.finalize("success")
    events = read_events(logger.log_dir)
    assert sorted(events.Tags()["scalars"]) == ["acc", "loss"]
    assert scalars(events, "loss") == [(0, 1.0), (10, 0.5), (2, 0.25)]
    assert scalars(events, "acc") == [(0, 0.25)]


@needs_tensorboard
def test_prefix_is_joined_with_a_dash(tmp_path):
    logger = TensorBoardLogger(tmp_path, prefix="val")
    logger.log_metrics({"loss": 1.0}, step=1)
    logger.finalize("success")
    assert read_events(logger.log_dir).Tags()["scalars"] == ["val-loss"]


@needs_tensorboard
def test_hyperparameters_reach_the_hparams_plugin_and_hparams_yaml(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.01, "optimizer": {"name": "adam"}, "layers": [64, 32]}, metrics={"val_loss": 0.3})
    logger.finalize("success")
    events = read_events(logger.log_dir)
    start = hparams_plugin(events, "session_start_info").session_start_info.hparams
    assert start["lr"].number_value == pytest.approx(0.01)
    assert start["optimizer/name"].string_value == "adam"
    assert start["layers"].string_value == "[64, 32]"
    experiment = hparams_plugin(events, "experiment").experiment
    assert [info.name.tag for info in experiment.metric_infos] == ["val_loss"]
    assert scalars(events, "val_loss") == [(0, pytest.approx(0.3))]
    yaml_text = (Path(logger.log_dir) / "hparams.yaml").read_text()
    assert yaml_text == "lr: 0.01\noptimizer:\n  name: adam\nlayers:\n  - 64\n  - 32\n"


@needs_tensorboard
def test_hyperparameters_of_several_calls_are_merged_in_hparams_yaml(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1, "batch_size": 8})
    logger.log_hyperparams({"lr": 0.2}, metrics=0.5)
    logger.finalize("success")
    events = read_events(logger.log_dir)
    # TensorBoard keeps the first hyperparameter record of a run; hparams.yaml has them all.
    start = hparams_plugin(events, "session_start_info").session_start_info.hparams
    assert {name: value.number_value for name, value in start.items()} == {"lr": pytest.approx(0.1), "batch_size": 8}
    assert scalars(events, "hp_metric") == [(0, -1.0), (0, 0.5)]
    assert (Path(logger.log_dir) / "hparams.yaml").read_text() == "lr: 0.2\nbatch_size: 8\n"


@needs_tensorboard
def test_hp_metric_placeholder_by_default(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams(Namespace(batch_size=32))
    logger.finalize("success")
    events = read_events(logger.log_dir)
    assert scalars(events, "hp_metric") == [(0, -1.0)]
    assert hparams_plugin(events, "session_start_info").session_start_info.hparams["batch_size"].number_value == 32


@needs_tensorboard
def test_without_default_hp_metric_hyperparameters_go_to_yaml_only(tmp_path):
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    logger.log_hyperparams({"batch_size": 32})
    logger.finalize("success")
    events = read_events(logger.log_dir)
    assert events.Tags()["scalars"] == []
    with pytest.raises(KeyError, match="hparams"):
        events.PluginTagToContent("hparams")
    assert (Path(logger.log_dir) / "hparams.yaml").read_text() == "batch_size: 32\n"


@needs_tensorboard
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")  # add_graph traces the model
def test_log_graph_records_the_model_fabric_wrapper_or_not(tmp_path):
    from fabric_core import Fabric

    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    plain = TensorBoardLogger(tmp_path, name="plain")
    plain.log_graph(model, torch.randn(1, 4))
    plain.finalize("success")
    assert read_events(plain.log_dir).Tags()["graph"]

    wrapped = Fabric(accelerator="cpu").setup(model)
    logger = TensorBoardLogger(tmp_path, name="wrapped")
    logger.log_graph(wrapped, torch.randn(1, 4))
    logger.finalize("success")
    assert read_events(logger.log_dir).Tags()["graph"]


@needs_tensorboard
def test_log_graph_without_an_input_warns_and_records_nothing(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    with pytest.warns(UserWarning, match="example_input_array"):
        logger.log_graph(torch.nn.Linear(4, 2))
    with pytest.warns(UserWarning, match="input_array is a str"):
        logger.log_graph(torch.nn.Linear(4, 2), "not a tensor")
    assert not tmp_path.joinpath("fabric_logs").exists()


@needs_tensorboard
def test_layout_with_sub_dir_and_versions(tmp_path):
    first = TensorBoardLogger(tmp_path, name="exp", sub_dir="train")
    first.log_metrics({"x": 1.0})
    first.finalize("success")
    second = TensorBoardLogger(tmp_path, name="exp", version="named", max_queue=1)
    third = TensorBoardLogger(tmp_path, name="exp")
    assert first.log_dir == os.path.join(str(tmp_path), "exp", "version_0", "train")
    assert first.sub_dir == "train"
    assert first.root_dir == str(tmp_path)
    assert second.log_dir == os.path.join(str(tmp_path), "exp", "named")
    assert third.version == 1
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(first.log_dir))


@needs_tensorboard
def test_save_flushes_and_finalize_is_idempotent(tmp_path):
    logger = TensorBoardLogger(tmp_path, flush_secs=10_000, max_queue=1000)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()
    assert scalars(read_events(logger.log_dir), "loss") == [(0, 1.0)]
    logger.finalize("success")
    logger.finalize("success")


@needs_tensorboard
def test_nothing_is_created_before_the_first_write(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    assert logger.version == 0
    logger.save()
    logger.finalize("success")
    assert not os.listdir(tmp_path)


@needs_tensorboard
def test_other_ranks_write_nothing(tmp_path, rank_one):
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_graph(torch.nn.Linear(2, 2), torch.randn(1, 2))
    logger.experiment.add_histogram("w", torch.randn(10), 0)
    logger.save()
    logger.finalize("success")
    assert not os.listdir(tmp_path)


@needs_tensorboard
def test_bad_metrics_and_arguments_are_refused(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    with pytest.raises(TypeError, match="'opt' is 'adam'"):
        logger.log_metrics({"opt": "adam"})
    with pytest.raises(TypeError, match=r"log_dir='x'.*pass root_dir="):
        TensorBoardLogger(tmp_path, log_dir="x")
    with pytest.raises(TypeError, match="sub_dir=3"):
        TensorBoardLogger(tmp_path, sub_dir=3)
    assert not os.listdir(tmp_path)


def test_without_tensorboard_construction_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    with pytest.raises(ModuleNotFoundError, match=r'pip install "fabric-loggers\[tensorboard\]"'):
        TensorBoardLogger(tmp_path)
    assert not os.listdir(tmp_path)
