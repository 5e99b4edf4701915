"""Collectives and no_backward_sync on 2 processes; every check asserts, so exit code 0 means all held.

usage: python ddp_collectives.py
"""

import os
import time

import torch
from torch import nn

from fabric_core import Fabric

fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
rank, world = fabric.global_rank, fabric.world_size
assert world == 2

# all_gather: tensors, numbers and nested collections gain a leading world-size dimension
gathered = fabric.all_gather({"t": torch.tensor([rank, rank + 10]), "n": [rank * 1.5]})
assert gathered["t"].tolist() == [[0, 10], [1, 11]], gathered
assert gathered["n"][0].tolist() == [0.0, 1.5], gathered

# all_gather with different shapes on the ranks is a clear error, not a hang or garbage
try:
    fabric.all_gather(torch.zeros(rank + 1))
except ValueError as err:
    assert "same tensor shape" in str(err), err
else:
    raise AssertionError("all_gather of mismatched shapes did not raise")

# all_reduce: mean (default), sum, max on tensors and collections
reduced = fabric.all_reduce({"a": torch.tensor([1.0 + rank]), "b": (torch.tensor(float(rank)),)})
assert reduced["a"].tolist() == [1.5] and reduced["b"][0].item() == 0.5, reduced
assert fabric.all_reduce(torch.tensor(rank + 1), reduce_op="sum").item() == 3
assert fabric.all_reduce(torch.tensor(rank + 1.0), reduce_op="max").item() == 2.0
assert fabric.all_reduce(torch.tensor(rank + 1.0), reduce_op=torch.distributed.ReduceOp.MIN).item() == 1.0
try:
    fabric.all_reduce(torch.tensor(1.0), reduce_op="median")
except ValueError as err:
    assert "median" in str(err)
else:
    raise AssertionError("unknown reduce op accepted")

# broadcast of any picklable object
assert fabric.broadcast({"from": rank, "list": [rank]}, src=1) == {"from": 1, "list": [1]}
fabric.barrier("after broadcast")

# rank_zero_first: rank 0 finishes the block before rank 1 starts it
order_file = __file__ + f".{fabric.strategy.cluster_environment.main_port}.order"
with fabric.rank_zero_first():
    if rank == 0:
        time.sleep(0.3)
    with open(order_file, "a") as f:
        f.write(str(rank))
fabric.barrier()
with open(order_file) as f:
    assert f.read() == "01"
fabric.barrier()
if rank == 0:
    os.remove(order_file)

# no_backward_sync: gradients stay local inside, are averaged outside
torch.manual_seed(0)
model = fabric.setup(nn.Linear(3, 1, bias=False))
x = torch.full((1, 3), float(rank + 1))
with fabric.no_backward_sync(model, enabled=True):
    fabric.backward(model(x).sum())
local = model.weight.grad.clone()
assert local.tolist() == [[rank + 1.0] * 3], local
both = fabric.all_gather(local)
assert not torch.equal(both[0], both[1])
model.weight.grad = None
fabric.backward(model(x).sum())
synced = fabric.all_gather(model.weight.grad.clone())
assert torch.equal(synced[0], synced[1]) and synced[0].tolist() == [[1.5] * 3], synced

# the distributed sampler splits the data and set_epoch reshuffles
loader = fabric.setup_dataloaders(
    torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(20)), batch_size=5, shuffle=True)
)
epoch0 = torch.cat([b[0] for b in loader])
epoch1 = torch.cat([b[0] for b in loader])
assert len(epoch0) == 10 and not torch.equal(epoch0, epoch1)
everything = fabric.all_gather(epoch0)
assert sorted(everything.flatten().tolist()) == list(range(20))

print(f"rank {rank} ok", flush=True)
