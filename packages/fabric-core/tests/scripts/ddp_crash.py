"""Rank 1 dies after joining the process group while rank 0 waits in a collective.

usage: python ddp_crash.py   -> must exit non-zero within seconds, leaving no process behind
"""

import os
import sys

import torch

from fabric_core import Fabric

fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
print(f"rank {fabric.global_rank} pid {os.getpid()}", flush=True)
fabric.barrier()
if fabric.global_rank == 1:
    sys.exit(17)
fabric.all_reduce(torch.ones(1))  # rank 0 waits here for a peer that is gone
fabric.barrier()
print("rank 0 should never get here", flush=True)
