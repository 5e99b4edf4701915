"""ZeRO stage 3 with fabric-deepspeed on 2 CPU processes (gloo), started by fabric.launch().

usage: python deepspeed_zero.py OUT_DIR     (writes OUT_DIR, a DeepSpeed checkpoint directory)

The model is created partitioned (init_module under stage 3), trained two steps, saved with a plain
value beside it, and loaded into a fresh copy: the gathered weights must match exactly. Only what
fabric-core[deepspeed] installs is used (DeepSpeed and its own dependencies).
Each rank prints "rank N deepspeed ok".
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from fabric_core import Fabric


def make(fabric: Fabric):
    torch.manual_seed(0)
    with fabric.init_module(empty_init=True):
        model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    return fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-2))


def main() -> None:
    out = Path(sys.argv[1])
    fabric = Fabric(accelerator="cpu", devices=2, strategy="deepspeed_stage_3")
    fabric.launch()
    model, optimizer = make(fabric)
    for _ in range(2):
        optimizer.zero_grad()
        x = torch.randn(4, 8)
        fabric.backward(model(x).square().mean())
        optimizer.step()
    fabric.save(out, {"model": model, "optimizer": optimizer, "step": 2})
    saved = fabric.strategy.get_module_state_dict(model._forward_module)

    restored, restored_optimizer = make(fabric)
    state = {"model": restored, "optimizer": restored_optimizer, "step": 0}
    fabric.load(out, state)
    loaded = fabric.strategy.get_module_state_dict(restored._forward_module)
    assert state["step"] == 2, state
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    print(f"rank {fabric.global_rank} deepspeed ok\n", end="", flush=True)


if __name__ == "__main__":
    main()
