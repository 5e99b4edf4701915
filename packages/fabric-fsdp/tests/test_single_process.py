"""Behaviour checked in this process, on a world of one: errors, warnings and crash safety."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fabric_core import Fabric
from fabric_fsdp import FSDPStrategy


def _setup(fabric: Fabric, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 2)
    return fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))


def test_an_optimizer_with_state_is_refused_before_the_model_is_sharded(fabric):
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    with pytest.raises(ValueError, match=r"fabric.setup\(\) got a SGD that already has state for 2 parameter"):
        fabric.setup(model, optimizer)
    assert not any(type(p).__name__ == "DTensor" for p in model.parameters())


def test_an_optimizer_keeps_its_groups_and_hyperparameters_when_re_pointed(fabric):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.5}, {"params": model[1].parameters()}], lr=0.1, momentum=0.9
    )
    model, optimizer = fabric.setup(model, optimizer)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.1]
    sharded = list(model.parameters())
    assert [p for g in optimizer.param_groups for p in g["params"]] == sharded


def test_a_model_the_user_sharded_is_kept_as_it_is(fabric):
    from torch.distributed.fsdp import fully_shard

    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    fully_shard(model[0], mesh=fabric.strategy.device_mesh, reshard_after_forward=False)
    fully_shard(model, mesh=fabric.strategy.device_mesh)
    wrapped = fabric.setup_module(model)
    assert wrapped.module is model


def test_empty_init_warns_about_tensors_no_reset_parameters_initialises(fabric):
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.weight

    with fabric.init_module(empty_init=True):
        model = nn.Sequential(nn.Linear(4, 4), Scale())
    assert model[1].weight.is_meta
    with pytest.warns(UserWarning, match=r"no reset_parameters\(\) method.*\['1'\]"):
        model = fabric.setup_module(model)
    assert not any(p.is_meta for p in model.parameters())


def test_a_failed_save_leaves_the_previous_checkpoint_in_place(fabric, tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp

    model, _ = _setup(fabric)
    fabric.save(tmp_path / "ckpt", {"model": model, "step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(dcp, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        fabric.save(tmp_path / "ckpt", {"model": model, "step": 2})
    monkeypatch.undo()
    assert fabric.load(tmp_path / "ckpt", {"model": model})["step"] == 1
    fabric.save(tmp_path / "ckpt", {"model": model, "step": 3})  # the half-written directory is cleaned up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert fabric.load(tmp_path / "ckpt", {"model": model})["step"] == 3


def test_a_full_save_onto_a_directory_is_refused(tmp_path):
    fabric = Fabric(accelerator="cpu", devices=1, strategy=FSDPStrategy(state_dict_type="full"))
    fabric.launch()
    try:
        model, _ = _setup(fabric)
        (tmp_path / "ckpt").mkdir()
        with pytest.raises(IsADirectoryError, match=r"writes one file, but .* is a directory"):
            fabric.save(tmp_path / "ckpt", {"model": model})
    finally:
        fabric.teardown()


def test_loading_from_a_directory_that_is_no_checkpoint_says_so(fabric, tmp_path):
    model, _ = _setup(fabric)
    with pytest.raises(ValueError, match=r"is a directory but not a sharded checkpoint \(it has no .metadata file\)"):
        fabric.load(tmp_path, {"model": model})
    with pytest.raises(FileNotFoundError, match="Checkpoint not found"):
        fabric.load(tmp_path / "missing", {"model": model})


def test_load_raw_takes_a_model_file_not_an_optimizer(fabric, tmp_path):
    _, optimizer = _setup(fabric)
    torch.save(nn.Linear(4, 2).state_dict(), tmp_path / "raw.pt")
    with pytest.raises(TypeError, match="loads a sharded optimizer's state together with its model"):
        fabric.load_raw(tmp_path / "raw.pt", optimizer)


def test_an_optimizer_of_no_known_model_cannot_be_saved(fabric, tmp_path):
    stray = torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="trains parameters of no model set up by this strategy"):
        fabric.save(tmp_path / "ckpt", {"optimizer": stray})
