"""Train a small model with 2-process DDP, either through Fabric or with raw torch.distributed.

usage: python ddp_train.py fabric OUT          (Fabric starts the second process itself)
       torchrun --nproc-per-node 2 ddp_train.py raw OUT
Rank 0 writes the final state dict to OUT.
"""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

EPOCHS = 3


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(123)
    x = torch.randn(128, 10, generator=generator)
    y = (x[:, 0] - x[:, 2] > 0).long()
    return TensorDataset(x, y)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 2))


def raw(out: str) -> None:
    dist.init_process_group("gloo")
    ddp = nn.parallel.DistributedDataParallel(model())
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    sampler = DistributedSampler(dataset(), shuffle=True, seed=0)
    loader = DataLoader(dataset(), batch_size=8, sampler=sampler)
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(ddp(x), y).backward()
            optimizer.step()
    if dist.get_rank() == 0:
        torch.save(ddp.module.state_dict(), out)
    del ddp
    dist.destroy_process_group()


def fabric(out: str) -> None:
    from fabric_core import Fabric

    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    fabric.launch()
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net, optimizer = fabric.setup(net, optimizer)
    loader = fabric.setup_dataloaders(DataLoader(dataset(), batch_size=8, shuffle=True))
    for _ in range(EPOCHS):
        for x, y in loader:
            optimizer.zero_grad()
            fabric.backward(nn.functional.cross_entropy(net(x), y))
            optimizer.step()
    if fabric.global_rank == 0:
        torch.save(net.state_dict(), out)
    assert fabric.world_size == 2 and len(loader) == 8, (fabric.world_size, len(loader))
    print(f"rank {fabric.global_rank} pid {os.getpid()} done", flush=True)


if __name__ == "__main__":
    {"raw": raw, "fabric": fabric}[sys.argv[1]](sys.argv[2])
