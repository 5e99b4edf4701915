"""A script for `fabric run`: no launch(), flags come from the command line.

usage: fabric run [--devices N] [--num-nodes M ...] cli_fabric.py [--conflict]
"""

import sys

import torch

from fabric_core import Fabric

kwargs = {"precision": "64-true"} if "--conflict" in sys.argv else {}
fabric = Fabric(**kwargs)
model, optimizer = fabric.setup(torch.nn.Linear(3, 1), torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
ranks = fabric.all_gather(torch.tensor(fabric.global_rank))
print(
    f"rank={fabric.global_rank} world={fabric.world_size} node={fabric.node_rank} "
    f"precision={fabric.precision_plugin.precision} ranks={ranks.tolist()} args={sys.argv[1:]}",
    flush=True,
)
