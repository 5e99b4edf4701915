"""A sharded checkpoint with fabric-fsdp's FSDPStrategy on 2 CPU processes (gloo), started by fabric.launch().

usage: python sharded.py OUT_DIR     (writes OUT_DIR/checkpoint, a sharded checkpoint directory)

torch.distributed.checkpoint coordinates the ranks with the object collectives (gather, scatter,
broadcast and all_gather of Python objects), which need numpy. The model and optimizer are saved
after two steps, loaded into freshly initialised copies, and must match exactly, shard by shard.
Each rank prints "rank N sharded ok".
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from fabric_core import Fabric
from fabric_fsdp import FSDPStrategy


def make(fabric: Fabric, seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    return fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-2))


def local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def same(a: dict, b: dict, where: str) -> None:
    assert a.keys() == b.keys(), (where, sorted(a), sorted(b))
    for key in a:
        if isinstance(a[key], dict):
            same(a[key], b[key], f"{where}[{key!r}]")
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(local(a[key]), local(b[key])), f"{where}[{key!r}] differs"
        else:
            assert a[key] == b[key], (where, key, a[key], b[key])


def main(out: Path) -> None:
    fabric = Fabric(
        accelerator="cpu", devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}, state_dict_type="sharded")
    )
    fabric.launch()
    model, optimizer = make(fabric, seed=0)
    generator = torch.Generator().manual_seed(fabric.global_rank)
    for _ in range(2):
        x, y = torch.randn(4, 8, generator=generator), torch.randint(0, 4, (4,), generator=generator)
        optimizer.zero_grad()
        fabric.backward(nn.functional.cross_entropy(model(x), y))
        optimizer.step()

    path = out / "checkpoint"
    fabric.save(path, {"model": model, "optimizer": optimizer, "step": 2, "note": "kept"})
    assert (path / ".metadata").is_file(), sorted(p.name for p in path.iterdir())

    restored, restored_optimizer = make(fabric, seed=1)
    state = {"model": restored, "optimizer": restored_optimizer, "step": 0}
    remainder = fabric.load(path, state)
    assert state["step"] == 2 and remainder == {"note": "kept"}, (state["step"], remainder)
    same(restored.state_dict(), model.state_dict(), "model")
    same(restored_optimizer.state_dict(), optimizer.state_dict(), "optimizer")
    print(f"rank {fabric.global_rank} sharded ok\n", end="", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
