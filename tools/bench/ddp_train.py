"""The ranks of the DDP throughput benchmark: ``python tools/bench/ddp_train.py CANDIDATE CONFIG_JSON``.

Self-contained on purpose (nothing from tools.bench): Fabric's launcher starts the second rank by running
this command line again. ``CONFIG`` holds the MLP's ``dims`` and the per-rank ``batch``. The same model
(seed 0), data, SGD and loss in every candidate:

- raw: ``init_process_group("gloo")`` from the torchrun-like environment the driver sets,
  ``DistributedDataParallel`` and a ``DataLoader`` with a ``DistributedSampler``;
- fabric_core / lightning: ``Fabric(accelerator="cpu", devices=2, strategy="ddp")``, ``fabric.launch()``
  (the framework starts rank 1), ``setup`` and ``setup_dataloaders`` (which adds the sampler);
- accelerate: ``Accelerator(cpu=True)`` in the torchrun-like environment, ``prepare(model, opt, loader)``.

A persistent worker, like tools/bench/worker.py: rank 0 answers the driver in JSON lines on stdout
(``{"ready": true}`` once set up) and passes every request to rank 1 with a broadcast. For
``{"cmd": "chunk", "steps": N}`` both ranks run N training steps between two barriers and rank 0 replies
``{"seconds": ...}``; ``{"cmd": "exit"}`` (or the end of stdin) ends both.
"""

from __future__ import annotations

import itertools
import json
import os
import sys

import torch
import torch.distributed as dist
from rank_protocol import serve
from torch import nn
from torch.nn.functional import cross_entropy
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

WORLD_SIZE = 2
BATCHES_PER_EPOCH = 50


def setup(candidate: str, config: dict):
    """The candidate's model, optimizer, batch iterator and backward, in a joined process group."""
    torch.manual_seed(0)
    dims, batch = config["dims"], config["batch"]
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(dims):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    size = batch * WORLD_SIZE * BATCHES_PER_EPOCH
    dataset = TensorDataset(torch.randn(size, dims[0]), torch.randint(0, dims[-1], (size,)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sampler = None
    if candidate == "raw":
        dist.init_process_group("gloo")
        model = nn.parallel.DistributedDataParallel(model)
        sampler = DistributedSampler(dataset, shuffle=True, seed=0)
        loader = DataLoader(dataset, batch_size=batch, sampler=sampler)

        def backward(loss: torch.Tensor) -> None:
            loss.backward()

    elif candidate in ("fabric_core", "lightning"):
        if candidate == "fabric_core":
            from fabric_core import Fabric
        else:
            from lightning.fabric import Fabric
        fabric = Fabric(accelerator="cpu", devices=WORLD_SIZE, strategy="ddp")
        fabric.launch()
        model, optimizer = fabric.setup(model, optimizer)
        loader = fabric.setup_dataloaders(DataLoader(dataset, batch_size=batch, shuffle=True))
        backward = fabric.backward
    elif candidate == "accelerate":
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=True)
        model, optimizer, loader = accelerator.prepare(model, optimizer, DataLoader(dataset, batch_size=batch))
        backward = accelerator.backward
    else:
        raise SystemExit(f"unknown candidate {candidate!r}")

    def batches():
        for epoch in itertools.count():
            if sampler is not None:
                sampler.set_epoch(epoch)
            yield from loader

    return model, optimizer, batches(), backward


def main() -> int:
    candidate, config = sys.argv[1], json.loads(sys.argv[2])
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints of the frameworks (and of a rank started from here) go to stderr
    torch.set_num_threads(1)
    model, optimizer, source, backward = setup(candidate, config)
    torch.set_num_threads(1)  # whatever the framework set: one thread per process, two processes on two cores

    def step() -> None:
        x, y = next(source)
        optimizer.zero_grad()
        backward(cross_entropy(model(x), y))
        optimizer.step()

    serve(protocol, lambda command: step)
    if candidate in ("raw", "accelerate"):
        dist.destroy_process_group()
        # The ranks this driver started sometimes hang in the interpreter's exit after a gloo run (seen with
        # torch 2.13): nothing is left to clean up, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
