"""How a 2-process DDP run started as ``python exit_codes.py MODE`` ends, for tests/test_launch_exit_codes.py.

Rank 0 is the process the test starts; rank 1 is the copy the launcher starts. Each rank prints
``rank R pid P`` once it has joined the process group, so that the test can check both are gone, and
the rank that fails prints ``ending at T`` (``time.time()``) just before, to time how long the run
takes to end after it.

MODE:
    clean         both ranks train a few steps and finish           -> exit 0
    rank0_exit    rank 0 calls sys.exit(3) after a barrier           -> exit 3
    rank0_exit_model  the same with a DDP-wrapped model still alive  -> exit 3
    rank0_raises  rank 0 raises an exception (model alive)           -> exit 1, traceback printed
    rank1_exit    rank 1 calls sys.exit(4) (model alive)             -> exit 4
"""

import os
import sys
import time

import torch
from torch import nn

from fabric_core import Fabric

mode = sys.argv[1]
fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
print(f"rank {fabric.global_rank} pid {os.getpid()}", flush=True)

if mode != "rank0_exit":
    model = nn.Linear(8, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = fabric.setup(model, optimizer)
    for _ in range(3):
        optimizer.zero_grad()
        fabric.backward(model(torch.randn(4, 8)).sum())
        optimizer.step()
fabric.barrier()

fails = {"rank0_exit": 0, "rank0_exit_model": 0, "rank0_raises": 0, "rank1_exit": 1}
if fails.get(mode) == fabric.global_rank:
    print(f"ending at {time.time()}", flush=True)
    if mode == "rank0_raises":
        raise RuntimeError("rank 0 failed on purpose")
    sys.exit(4 if mode == "rank1_exit" else 3)
if mode != "clean":
    # The surviving rank waits for a peer that has gone, as a training loop would.
    fabric.barrier()
    print(f"rank {fabric.global_rank} should never get here", flush=True)
