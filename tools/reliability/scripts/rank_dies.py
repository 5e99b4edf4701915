"""A two-process DDP run on CPU (gloo) whose rank 1 dies mid-training: what the ``dead_rank`` measurement runs.

usage: python rank_dies.py launch HOW STAMP     Fabric(accelerator="cpu", devices=2, strategy="ddp").launch()
       fabric run --accelerator cpu --devices 2 rank_dies.py cli HOW STAMP     the same, without launch()

Both ranks train in a loop with a collective every step (DDP's gradient all-reduce and a fabric.all_reduce
of the loss). After STEPS steps rank 1 writes time.time() to STAMP and dies: HOW=exit calls os._exit(1),
HOW=raise raises a RuntimeError. Rank 0 trains on until the run is ended for it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from fabric_core import Fabric

STEPS = 20


def main(mode: str, how: str, stamp: Path) -> None:
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    if mode == "launch":
        fabric.launch()
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer = fabric.setup(model, optimizer)
    step = 0
    while True:
        step += 1
        loss = model(torch.randn(16, 32, device=fabric.device)).pow(2).mean()
        optimizer.zero_grad()
        fabric.backward(loss)
        optimizer.step()
        fabric.all_reduce(loss.detach())
        if fabric.global_rank == 1 and step == STEPS:
            stamp.write_text(repr(time.time()))
            if how == "exit":
                os._exit(1)
            raise RuntimeError("rank 1 dies on purpose")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
