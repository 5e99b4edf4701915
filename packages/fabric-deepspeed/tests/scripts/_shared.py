"""What fabric-deepspeed's test scripts share: a launched Fabric, the model, the data, and one-line reports."""

from __future__ import annotations

import gc
import os
from typing import Any

import torch
from torch import nn

from fabric_core import Fabric

# Each Fabric's teardown collects garbage; what is imported by now lives for the whole run.
gc.freeze()

#: The GPU tests run the same scripts on CUDA devices.
ACCELERATOR = os.environ.get("FABRIC_DEEPSPEED_TEST_ACCELERATOR", "cpu")
DEVICES = int(os.environ.get("FABRIC_DEEPSPEED_TEST_DEVICES", "2"))
STEPS = 4


def launched_fabric(**kwargs: Any) -> Fabric:
    """``Fabric(accelerator=ACCELERATOR, devices=DEVICES, **kwargs)``, launched; later calls join the running ones."""
    fabric = Fabric(accelerator=ACCELERATOR, devices=DEVICES, **kwargs)
    fabric.launch()
    os.environ.setdefault("LOCAL_RANK", str(fabric.local_rank))
    return fabric


def report(line: str) -> None:
    """Print one line in a single write, so that the two ranks' lines never interleave."""
    print(line + "\n", end="", flush=True)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))


def make_optimizer(parameters) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=0.01, weight_decay=0.01)


def batches(steps: int = STEPS, offset: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` global batches of 16 samples (each rank takes its half)."""
    generator = torch.Generator().manual_seed(1)
    result = []
    for _ in range(offset + steps):
        x = torch.randn(16, 10, generator=generator)
        result.append((x, (x[:, 0] - x[:, 3] > 0).long()))
    return result[offset:]


def local(batch: tuple[torch.Tensor, torch.Tensor], fabric: Fabric) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    half = x.shape[0] // fabric.world_size
    start = fabric.global_rank * half
    return x[start : start + half].to(fabric.device), y[start : start + half].to(fabric.device)


def train(fabric: Fabric, model, optimizer, steps: list) -> None:
    for batch in steps:
        x, y = local(batch, fabric)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        fabric.backward(loss)
        optimizer.step()


def full_parameters(fabric: Fabric, model) -> dict[str, torch.Tensor]:
    """Every parameter whole, in float32 (gathered from the partitions under ZeRO stage 3: call on every rank)."""
    return {k: v.float() for k, v in fabric.strategy.get_module_state_dict(model._forward_module).items()}


def worst_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), f"{sorted(a)} != {sorted(b)}"
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)
