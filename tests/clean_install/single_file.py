"""A single-file checkpoint, saved and loaded in one process.

usage: python single_file.py PATH       Prints "single file ok".
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from fabric_core import Fabric


def make(fabric: Fabric, seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    return fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-2))


def main(path: str) -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric.launch()
    model, optimizer = make(fabric, seed=0)
    x, y = torch.randn(4, 8), torch.randint(0, 4, (4,))
    fabric.backward(nn.functional.cross_entropy(model(x), y))
    optimizer.step()
    fabric.save(path, {"model": model, "optimizer": optimizer, "epoch": 3, "extra": {"name": "clean"}})

    restored, restored_optimizer = make(fabric, seed=1)
    state = {"model": restored, "optimizer": restored_optimizer, "epoch": 0}
    remainder = fabric.load(path, state)
    assert state["epoch"] == 3 and remainder == {"extra": {"name": "clean"}}, (state["epoch"], remainder)
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    saved, loaded = optimizer.state_dict()["state"], restored_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys() and all(
        torch.equal(saved[i][k], loaded[i][k]) for i in saved for k in saved[i]
    ), "optimizer state differs"
    whole = torch.load(path, weights_only=True)  # a plain torch.save file: weights_only loading works
    assert set(whole) == {"model", "optimizer", "epoch", "extra"}, sorted(whole)
    print("single file ok")


if __name__ == "__main__":
    main(sys.argv[1])
