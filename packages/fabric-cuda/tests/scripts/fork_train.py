"""Resolve a GPU run in this process, then fork the workers: they must still be able to use CUDA.

usage: python fork_train.py NUM_GPUS PRECISION
"""

import sys

import torch

from fabric_core import Fabric


def train(fabric):
    model = torch.nn.Linear(4, 1)
    model, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    inputs = fabric.to_device(torch.randn(16, 4, generator=torch.Generator().manual_seed(fabric.global_rank)))
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = model(inputs).pow(2).mean()
        fabric.backward(loss)
        optimizer.step()
        losses.append(loss.item())
    return {"device": str(fabric.device), "decreased": losses[-1] < losses[0]}


if __name__ == "__main__":
    fabric = Fabric(accelerator="cuda", devices=int(sys.argv[1]), strategy="ddp_fork", precision=sys.argv[2])
    initialised = torch.cuda.is_initialized()
    result = fabric.launch(train)
    print(f"initialised_before_fork={initialised} device={result['device']} decreased={result['decreased']}")
