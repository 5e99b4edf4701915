"""Train the same model with each FSDP sharding strategy and with model_parallel, and with raw DDP.

usage: python parity.py        (two processes, started by Fabric; every configuration runs in them)

Every step accumulates two micro-batches, the first under no_backward_sync (DDP: no_sync), then clips
the gradients by norm: the norms must agree with DDP's within 1e-5 at every step, and so must every
parameter after the last step. With FULL_SHARD the script also checks that fabric.setup_module +
fabric.setup_optimizers (optimizer created after, and before, sharding) train exactly like
fabric.setup(model, optimizer). Each rank prints "rank N CONFIGURATION ok" per configuration.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from _shared import full_parameters, launched_fabric, report
from torch import nn

from fabric_core import Fabric

STEPS = 4
TOLERANCE = 1e-5
MAX_NORM = 0.5


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))


def make_optimizer(parameters) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=0.1, momentum=0.9)


def batches() -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """STEPS steps of two global micro-batches of 16 samples each."""
    generator = torch.Generator().manual_seed(1)
    steps = []
    for _ in range(STEPS):
        micro = []
        for _ in range(2):
            x = torch.randn(16, 10, generator=generator)
            micro.append((x, (x[:, 0] - x[:, 3] > 0).long()))
        steps.append(micro)
    return steps


def parallelize(model: nn.Module, device_mesh) -> nn.Module:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    plan = {"0": ColwiseParallel(), "2": RowwiseParallel()}  # layer 4 stays whole: a second mesh to clip over
    parallelize_module(model, device_mesh["tensor_parallel"], plan)
    fully_shard(model, mesh=device_mesh["data_parallel"])
    return model


#: configuration name -> the strategy's arguments (None: model_parallel)
CONFIGURATIONS = {
    "FULL_SHARD": {"sharding_strategy": "FULL_SHARD"},
    "SHARD_GRAD_OP": {"sharding_strategy": "SHARD_GRAD_OP"},
    "NO_SHARD": {"sharding_strategy": "NO_SHARD"},
    "HYBRID_SHARD(1,2)": {"sharding_strategy": "HYBRID_SHARD"},  # 1 node x 2 devices: the default mesh
    "HYBRID_SHARD(2,1)": {"sharding_strategy": "HYBRID_SHARD", "device_mesh": (2, 1)},
    "model_parallel(1x2)": None,
}


def make_strategy(arguments: dict | None):
    if arguments is None:
        from fabric_fsdp import ModelParallelStrategy

        return ModelParallelStrategy(parallelize, data_parallel_size=1, tensor_parallel_size=2)
    from fabric_fsdp import FSDPStrategy

    return FSDPStrategy(auto_wrap_policy={nn.Linear}, **arguments)


def make_fabric(arguments: dict | None) -> Fabric:
    return launched_fabric(devices=2, strategy=make_strategy(arguments))


def local_batch(fabric: Fabric, x: torch.Tensor, y: torch.Tensor, data_parallel: bool):
    if data_parallel:
        x, y = x[fabric.global_rank :: 2], y[fabric.global_rank :: 2]
    return fabric.to_device((x, y))  # tensor parallel ranks see the whole batch


def train_fabric(fabric: Fabric, model, optimizer, data_parallel: bool) -> list[float]:
    norms = []
    for micro in batches():
        optimizer.zero_grad()
        (x0, y0), (x1, y1) = (local_batch(fabric, x, y, data_parallel) for x, y in micro)
        with fabric.no_backward_sync(model):
            fabric.backward(nn.functional.cross_entropy(model(x0), y0))
        fabric.backward(nn.functional.cross_entropy(model(x1), y1))
        norm = fabric.clip_gradients(model, optimizer, max_norm=MAX_NORM)
        assert type(norm) is torch.Tensor, f"the norm is a {type(norm).__name__}, expected a plain tensor"
        norms.append(norm.item())
        optimizer.step()
    return norms


def train_ddp(fabric: Fabric) -> tuple[nn.Module, list[float]]:
    device = fabric.device
    ddp = nn.parallel.DistributedDataParallel(
        make_model().to(device), device_ids=None if device.type == "cpu" else [device.index]
    )
    optimizer = make_optimizer(ddp.parameters())
    norms = []
    for micro in batches():
        optimizer.zero_grad()
        (x0, y0), (x1, y1) = (local_batch(fabric, x, y, True) for x, y in micro)
        with ddp.no_sync():
            nn.functional.cross_entropy(ddp(x0), y0).backward()
        nn.functional.cross_entropy(ddp(x1), y1).backward()
        norms.append(torch.nn.utils.clip_grad_norm_(ddp.parameters(), MAX_NORM).item())
        optimizer.step()
    return ddp.module, norms


def check(name: str, arguments: dict | None, reference: dict[str, torch.Tensor], reference_norms: list[float]) -> None:
    fabric = make_fabric(arguments)
    data_parallel = arguments is not None
    model = make_model()
    model, optimizer = fabric.setup(model, make_optimizer(model.parameters()))
    norms = train_fabric(fabric, model, optimizer, data_parallel)

    for step, (ours, theirs) in enumerate(zip(norms, reference_norms)):
        assert abs(ours - theirs) <= TOLERANCE * max(1.0, theirs), f"{name} step {step}: norm {ours} != DDP's {theirs}"
    ours = full_parameters(model.module)
    assert ours.keys() == reference.keys(), (ours.keys(), reference.keys())
    worst = max((ours[key] - reference[key]).abs().max().item() for key in ours)
    assert worst <= TOLERANCE, f"{name}: a parameter differs from DDP's by {worst}"

    if name == "FULL_SHARD":
        # setup_module, then an optimizer created from the sharded parameters.
        separate = fabric.setup_module(make_model())
        separate_optimizer = fabric.setup_optimizers(make_optimizer(separate.parameters()))
        assert train_fabric(fabric, separate, separate_optimizer, True) == norms
        # An optimizer created before setup_module is pointed at the sharded parameters.
        early = make_model()
        early_optimizer = make_optimizer(early.parameters())
        early = fabric.setup_module(early)
        early_optimizer = fabric.setup_optimizers(early_optimizer)
        assert train_fabric(fabric, early, early_optimizer, True) == norms
        for other in (separate, early):
            got = full_parameters(other.module)
            assert all(torch.equal(got[key], ours[key]) for key in ours), "the setup paths trained differently"
    report(f"rank {fabric.global_rank} {name} ok: worst parameter difference {worst:.2e}")


def main() -> None:
    fabric = make_fabric(CONFIGURATIONS["FULL_SHARD"])
    reference, reference_norms = train_ddp(fabric)
    assert reference_norms[0] > MAX_NORM, f"the gradients were never clipped (norm {reference_norms[0]})"
    reference_parameters = {name: p.detach().clone() for name, p in reference.named_parameters()}
    del reference
    for name, arguments in CONFIGURATIONS.items():
        check(name, arguments, reference_parameters, reference_norms)
    report(f"rank {fabric.global_rank} world {dist.get_world_size()} done")


if __name__ == "__main__":
    main()
