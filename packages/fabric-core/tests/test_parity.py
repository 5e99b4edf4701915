"""Fabric in one process computes exactly what the plain PyTorch loop computes, bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fabric_core import Fabric


def _data() -> TensorDataset:
    generator = torch.Generator().manual_seed(123)
    x = torch.randn(96, 10, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x, y)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2))


def _loader() -> DataLoader:
    return DataLoader(_data(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7))


def _train_raw(double: bool) -> dict[str, torch.Tensor]:
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    if double:
        model.double()
    loader = _loader()
    torch.manual_seed(99)  # dropout
    for _ in range(3):
        for x, y in loader:
            if double:
                x = x.double()
            out = model(x)
            if double:
                out = out.float()  # Fabric's 64-true hands outputs back in the default dtype
            loss = nn.functional.cross_entropy(out, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def _train_fabric(precision: str) -> dict[str, torch.Tensor]:
    fabric = Fabric(accelerator="cpu", precision=precision)
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    loader = fabric.setup_dataloaders(_loader())
    torch.manual_seed(99)
    for _ in range(3):
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            fabric.backward(loss)
            optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("precision", "double"), [("32-true", False), ("64-true", True)])
def test_single_process_training_matches_the_raw_loop_bit_for_bit(precision, double):
    raw = _train_raw(double)
    fabric = _train_fabric(precision)
    assert raw.keys() == fabric.keys()
    for name in raw:
        assert raw[name].dtype == fabric[name].dtype
        assert torch.equal(raw[name], fabric[name]), name
    # and training did move the weights
    assert not torch.equal(raw["0.weight"], _model().double()[0].weight if double else _model()[0].weight)
