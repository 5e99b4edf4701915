"""A script for `fabric run --accelerator cuda --devices N`: trains a few steps on each rank's own GPU.

Prints one line per rank: its device, the process-group backend, every rank's device index and whether
the loss went down.
"""

import torch

from fabric_core import Fabric

fabric = Fabric()  # accelerator and devices come from the command line
fabric.seed_everything(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
model, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
inputs = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
inputs, target = fabric.to_device((inputs, inputs.sum(dim=1, keepdim=True)))
losses = []
for _ in range(20):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(inputs), target)
    fabric.backward(loss)
    optimizer.step()
    losses.append(loss.item())
indices = fabric.all_gather(torch.tensor(torch.cuda.current_device(), device=fabric.device))
print(
    f"rank={fabric.global_rank} device={fabric.device} current={torch.cuda.current_device()} "
    f"backend={getattr(fabric.strategy, 'process_group_backend', None)} indices={indices.reshape(-1).tolist()} "
    f"decreased={losses[-1] < losses[0]}",
    flush=True,
)
