"""launch(fn) with spawn- or fork-started workers returns rank 0's result to the calling process.

usage: python spawn_launch.py ddp_spawn|ddp_fork
"""

import sys

import torch

from fabric_core import Fabric


def train(fabric, scale):
    model = fabric.setup(torch.nn.Linear(2, 1))
    total = fabric.all_reduce(torch.tensor(float(fabric.global_rank + 1)), reduce_op="sum")
    return {
        "rank": fabric.global_rank,
        "world": fabric.world_size,
        "total": total * scale,
        "params": model.weight,
    }


if __name__ == "__main__":
    fabric = Fabric(accelerator="cpu", devices=2, strategy=sys.argv[1])
    result = fabric.launch(train, 10)
    assert result["rank"] == 0 and result["world"] == 2, result
    assert result["total"].item() == 30.0, result
    assert result["params"].device.type == "cpu"
    print("result ok", flush=True)
