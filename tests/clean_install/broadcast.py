"""fabric.broadcast of a Python object and of a tensor; started by `fabric run --accelerator cpu --devices 2`.

torch's object collectives (broadcast_object_list, used by fabric.broadcast) turn the received bytes
back into objects through tensor.numpy(): without numpy this fails on the receiving rank.
Each rank prints "rank N broadcast ok".
"""

from __future__ import annotations

import torch

from fabric_core import Fabric

fabric = Fabric()  # accelerator and devices come from `fabric run`, which started both processes (no launch())
assert fabric.world_size == 2, f"expected 2 processes, got {fabric.world_size}"
rank = fabric.global_rank

sent = {"from": rank, "items": [1, 2.5, "three", None], "nested": {"ok": True}}
received = fabric.broadcast(sent if rank == 0 else None, src=0)
assert received == {"from": 0, "items": [1, 2.5, "three", None], "nested": {"ok": True}}, received

tensor = fabric.broadcast(torch.arange(6, dtype=torch.float32).reshape(2, 3) + 100 * rank, src=1)
assert torch.equal(tensor, torch.arange(6, dtype=torch.float32).reshape(2, 3) + 100), tensor

gathered = fabric.all_gather(torch.tensor([rank]))
assert gathered.flatten().tolist() == [0, 1], gathered
fabric.barrier("broadcast checked")
print(f"rank {rank} broadcast ok\n", end="", flush=True)
