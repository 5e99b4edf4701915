"""A short, normal two-process DDP run on CPU (gloo) that ends by itself: what the ``exit`` measurement runs.

usage: python ddp_exit.py launch CKPT     Fabric(accelerator="cpu", devices=2, strategy="ddp").launch()
       fabric run --accelerator cpu --devices 2 ddp_exit.py cli CKPT     the same Fabric, without launch()

A few training steps with fabric.backward, one fabric.save to CKPT, then the normal end of the script.
Each rank prints "rank N done" as its last line.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from fabric_core import Fabric

STEPS = 5


def main(mode: str, ckpt: str) -> None:
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    if mode == "launch":
        fabric.launch()
    torch.manual_seed(fabric.global_rank)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer = fabric.setup(model, optimizer)
    for _ in range(STEPS):
        loss = model(torch.randn(16, 32, device=fabric.device)).pow(2).mean()
        optimizer.zero_grad()
        fabric.backward(loss)
        optimizer.step()
    fabric.save(ckpt, {"model": model, "optimizer": optimizer, "step": STEPS})
    print(f"rank {fabric.global_rank} done\n", end="", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
