"""Checkpoints, precisions, init_module(empty_init=True) and the other FSDP features, on two processes.

usage: python features.py OUT_DIR        (two processes, started by Fabric)

Writes OUT_DIR/sharded (a sharded checkpoint) and OUT_DIR/full.pt (the same state, one full file) for
the tests that load them in one process and consolidate them. Each rank prints "rank N CHECK ok" per
check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from _shared import assert_same, full, full_parameters, launched_fabric, report
from torch import nn
from torch.distributed.tensor import DTensor

from fabric_core import Fabric
from fabric_core.strategies import CheckpointKeyError
from fabric_fsdp import FSDPStrategy
from fabric_fsdp.checkpoint import optimizer_state


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 4))


def setup(fabric: Fabric, seed: int = 0, lr: float = 1e-2):
    model = make_model(seed)
    return fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=lr))


def step(fabric: Fabric, model, optimizer, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 2 + fabric.global_rank)
    x, y = fabric.to_device((torch.randn(8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator)))
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    fabric.backward(loss)
    optimizer.step()
    return loss.detach()


def done(fabric: Fabric, check: str) -> None:
    report(f"rank {fabric.global_rank} {check} ok")


def checkpoints(out: Path) -> None:
    sharded_fabric = launched_fabric(devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}))
    full_fabric = launched_fabric(
        devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}, state_dict_type="full")
    )
    fabric = sharded_fabric
    model, optimizer = setup(fabric)
    for i in range(3):
        step(fabric, model, optimizer, i)
    state = {"model": model, "optimizer": optimizer, "step": 3, "note": "kept in meta.pt"}
    fabric.save(out / "sharded", state)
    fabric.save(out / "sharded", state)  # replacing a checkpoint leaves no temporary directory behind
    full_fabric.save(out / "full.pt", state)
    assert sorted(p.name for p in out.iterdir()) == ["full.pt", "sharded"], sorted(out.iterdir())
    assert (out / "sharded" / "meta.pt").is_file() and (out / "sharded" / ".metadata").is_file()

    # Sharded and full round trips are exact, shard by shard, optimizer state included.
    for name, loader, path in [
        ("sharded round trip", sharded_fabric, out / "sharded"),
        ("full round trip", full_fabric, out / "full.pt"),
        ("full file into a sharded-checkpoint strategy", sharded_fabric, out / "full.pt"),
    ]:
        restored, restored_optimizer = setup(loader, seed=1, lr=0.5)
        target = {"model": restored, "optimizer": restored_optimizer, "step": 0}
        remainder = loader.load(path, target)
        assert remainder == {"note": "kept in meta.pt"}, remainder
        assert target["step"] == 3
        assert_same(restored.state_dict(), model.state_dict(), f"{name}: model")
        assert_same(restored_optimizer.state_dict(), optimizer.state_dict(), f"{name}: optimizer")
        # ... and training goes on identically from any restored copy.
        other, other_optimizer = clone(fabric, path)
        step(loader, restored, restored_optimizer, 7)
        step(fabric, other, other_optimizer, 7)
        assert_same(restored.state_dict(), other.state_dict(), f"{name}: after a step")
        done(fabric, name)

    # strict: a key the checkpoint lacks is an error; strict=False skips it.
    restored, restored_optimizer = setup(fabric, seed=1)
    try:
        fabric.load(out / "sharded", {"model": restored, "scheduler": {}})
        raise AssertionError("a missing key was not reported")
    except CheckpointKeyError as err:
        assert "scheduler" in str(err), err
    fabric.load(out / "sharded", {"model": restored, "scheduler": {}}, strict=False)
    assert_same(restored.state_dict(), model.state_dict(), "strict=False: model")
    # Without a state, load returns the whole checkpoint, whole tensors.
    everything = fabric.load(out / "sharded")
    assert everything["step"] == 3 and set(everything) == {"model", "optimizer", "step", "note"}
    assert_same(everything["model"], {k: full(v) for k, v in model.state_dict().items()}, "load(path)")
    done(fabric, "strict and load without state")

    # An optimizer saved before its first step comes back without state (Adam's step count is not bumped).
    fresh, fresh_optimizer = setup(fabric, seed=2, lr=0.123)
    for path, saver in [(out / "fresh", sharded_fabric), (out / "fresh.pt", full_fabric)]:
        saver.save(path, {"model": fresh, "optimizer": fresh_optimizer})
        assert not fresh_optimizer.state, "saving created optimizer state"
        restored, restored_optimizer = setup(fabric, seed=3, lr=1.0)
        step(fabric, restored, restored_optimizer, 0)
        fabric.load(path, {"model": restored, "optimizer": restored_optimizer})
        assert not restored_optimizer.state and restored_optimizer.param_groups[0]["lr"] == 0.123
        assert_same(restored.state_dict(), fresh.state_dict(), f"{path.name}: model")
    done(fabric, "optimizer saved before its first step")

    # A checkpoint of a plain, unsharded run (optimizer state keyed by position) loads into sharded models.
    plain = make_model(seed=4)
    plain_optimizer = torch.optim.AdamW(plain.parameters(), lr=1e-2)
    plain(torch.randn(2, 8, generator=torch.Generator().manual_seed(0))).sum().backward()
    plain_optimizer.step()
    if fabric.is_global_zero:
        torch.save({"model": plain.state_dict(), "optimizer": plain_optimizer.state_dict()}, out / "plain.pt")
        torch.save(plain.state_dict(), out / "plain-model.pt")
    fabric.barrier("plain checkpoint written")
    restored, restored_optimizer = setup(fabric, seed=1)
    fabric.load(out / "plain.pt", {"model": restored, "optimizer": restored_optimizer})
    assert_same(full_parameters(restored.module), dict(plain.named_parameters()), "plain checkpoint: model")
    names = [name for name, _ in plain.named_parameters()]
    expected = {name: plain_optimizer.state[p] for name, p in zip(names, plain.parameters())}
    gathered = optimizer_state(restored.module, restored_optimizer.optimizer, full=True)
    if fabric.is_global_zero:  # the full state is gathered on rank 0
        assert_same(gathered["state"], expected, "plain checkpoint: optimizer state")
    raw = make_model(seed=1)
    raw = fabric.setup_module(raw)
    fabric.load_raw(out / "plain-model.pt", raw)
    assert_same(full_parameters(raw.module), dict(plain.named_parameters()), "load_raw")
    done(fabric, "plain checkpoint into sharded models")


def clone(fabric: Fabric, path: Path):
    """A model and optimizer restored from ``path``, to run the same step as the restored ones."""
    model, optimizer = setup(fabric, seed=5)
    fabric.load(path, {"model": model, "optimizer": optimizer})
    return model, optimizer


def mixed_precision() -> None:
    for precision, low in [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)]:
        fabric = launched_fabric(devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}), precision=precision)
        model, optimizer = setup(fabric)
        seen: list[torch.dtype] = []
        model.module[2].register_forward_hook(lambda module, args, output, seen=seen: seen.append(output.dtype))
        sharded = list(model.parameters())
        assert all(isinstance(p, DTensor) and p.dtype == torch.float32 for p in sharded), [p.dtype for p in sharded]
        for i in range(4):
            loss = step(fabric, model, optimizer, i)
            assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert seen and set(seen) == {low}, f"{precision}: activations in {set(seen)}"
        # The master weights (what the optimizer updates) and the optimizer state stay float32.
        assert all(p.dtype == torch.float32 and p.to_local().dtype == torch.float32 for p in model.parameters())
        assert all(p is q for p, q in zip(model.parameters(), sharded)), "the parameters were replaced"
        moments = [s["exp_avg"] for s in optimizer.state.values()]
        assert moments and all(m.dtype == torch.float32 for m in moments)
        if precision == "16-mixed":
            scale = fabric.strategy.precision.scaler.get_scale()
            assert type(fabric.strategy.precision.scaler).__name__ == "ShardedGradScaler" and scale > 0
        done(fabric, f"{precision} master weights")

    fabric = launched_fabric(devices=2, strategy=FSDPStrategy(), precision="bf16-true")
    model, optimizer = setup(fabric)
    step(fabric, model, optimizer, 0)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    done(fabric, "bf16-true")


def empty_init() -> None:
    fabric = launched_fabric(devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}))
    with fabric.init_module(empty_init=True):
        model = make_model()
    assert all(p.is_meta for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-2))
    local = [p.to_local() for p in model.parameters()]
    assert not any(t.is_meta for t in local) and all(torch.isfinite(t).all() for t in local)
    # Each rank holds only its shard: half of every parameter (the sizes are even).
    assert sum(t.numel() for t in local) * 2 == total, (sum(t.numel() for t in local), total)
    weight = full(model.module[0].weight)
    assert not torch.equal(weight[:8], weight[8:]), "the two shards were initialised alike"
    step(fabric, model, optimizer, 0)
    done(fabric, "init_module(empty_init=True)")


def other_features() -> None:
    fabric = launched_fabric(devices=2, strategy="fsdp_cpu_offload")
    assert fabric.strategy.cpu_offload
    model, optimizer = setup(fabric)
    step(fabric, model, optimizer, 0)
    done(fabric, "fsdp_cpu_offload")

    # Activation checkpointing recomputes, it does not change the result.
    plain = launched_fabric(devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}))
    recomputing = launched_fabric(
        devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}, activation_checkpointing_policy={nn.Linear})
    )
    results = []
    for f in (plain, recomputing):
        model, optimizer = setup(f)
        step(f, model, optimizer, 0)
        results.append(full_parameters(model.module))
    assert_same(results[1], results[0], "activation checkpointing")
    done(fabric, "activation checkpointing")

    # Clipping by value clamps each gradient element of every shard.
    model, optimizer = setup(plain)
    plain.backward(model(plain.to_device(torch.randn(4, 8))).square().sum() * 100)
    plain.clip_gradients(model, optimizer, clip_val=0.01)
    assert max(p.grad.to_local().abs().max().item() for p in model.parameters()) <= 0.01
    done(fabric, "clip_gradients(clip_val)")

    # Collectives behave as with DDP.
    rank = fabric.to_device(torch.tensor([float(fabric.global_rank)]))
    assert fabric.all_reduce(rank.clone(), reduce_op="sum").item() == 1.0
    assert fabric.all_gather(rank).flatten().cpu().tolist() == [0.0, 1.0]
    assert fabric.broadcast(fabric.global_rank, src=1) == 1
    fabric.barrier("end")
    done(fabric, "collectives")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    checkpoints(out)
    mixed_precision()
    empty_init()
    other_features()
