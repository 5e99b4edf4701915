"""A 2-process DDP run written top to bottom, as most training scripts are: the model stays alive at exit.

usage: python ddp_script_style.py   -> must exit 0 every time (Fabric tears down in a safe order)
"""

import torch
from torch import nn

from fabric_core import Fabric

fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
optimizer = torch.optim.Adam(model.parameters())
model, optimizer = fabric.setup(model, optimizer)
for _ in range(5):
    optimizer.zero_grad()
    fabric.backward(model(torch.randn(8, 16)).pow(2).mean())
    optimizer.step()
fabric.barrier()
# A last forward without backward leaves DDP expecting a gradient sync; exiting must still be clean.
model(torch.randn(8, 16))
