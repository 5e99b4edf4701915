"""FSDP on one CUDA GPU: bf16-mixed training from a meta-device model, checkpoints, CPU offload, timings.

usage: python gpu_one.py OUT_DIR      (prints "gpu ok" and a line of figures)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from _shared import assert_same, report
from torch import nn

from fabric_core import Fabric
from fabric_fsdp import FSDPStrategy

WIDTH = 2048


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH)
        self.up = nn.Linear(WIDTH, 4 * WIDTH)
        self.down = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


def make_model() -> nn.Module:
    return nn.Sequential(*[Block() for _ in range(4)], nn.Linear(WIDTH, 8))


def train(fabric: Fabric, model, optimizer, steps: int) -> float:
    x = fabric.to_device(torch.randn(16, 128, WIDTH))
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(x).float().square().mean()
        fabric.backward(loss)
        fabric.clip_gradients(model, optimizer, max_norm=1.0)
        optimizer.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main(out: Path) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    strategy = FSDPStrategy(auto_wrap_policy={Block}, activation_checkpointing_policy={Block})
    fabric = Fabric(accelerator="cuda", devices=1, strategy=strategy, precision="bf16-mixed")
    fabric.launch()
    with fabric.init_module(empty_init=True):
        model = make_model()
    model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    seen = []
    model.module[0].up.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in model.parameters())
    train(fabric, model, optimizer, 3)  # warm-up
    torch.cuda.reset_peak_memory_stats()
    step_time = train(fabric, model, optimizer, 20)
    peak = torch.cuda.max_memory_allocated() / 2**30
    assert set(seen) == {torch.bfloat16}, seen
    assert all(p.dtype == torch.float32 for p in model.parameters())

    fabric.save(out / "sharded", {"model": model, "optimizer": optimizer, "step": 23})
    fresh = make_model()
    restored, restored_optimizer = fabric.setup(fresh, torch.optim.AdamW(fresh.parameters(), lr=1.0))
    state = {"model": restored, "optimizer": restored_optimizer, "step": 0}
    fabric.load(out / "sharded", state)
    assert state["step"] == 23
    assert_same(restored.state_dict(), model.state_dict(), "model")
    assert_same(restored_optimizer.state_dict(), optimizer.state_dict(), "optimizer")

    offload = Fabric(accelerator="cuda", devices=1, strategy=FSDPStrategy(cpu_offload=True), precision="bf16-mixed")
    offload.launch()  # joins the process group the first one created
    offloaded_model = make_model()
    offloaded, offloaded_optimizer = offload.setup(
        offloaded_model, torch.optim.AdamW(offloaded_model.parameters(), lr=1e-4)
    )
    offload_time = train(offload, offloaded, offloaded_optimizer, 3)
    assert all(p.device.type == "cpu" for p in offloaded.parameters())
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    report(
        f"gpu ok: {torch.cuda.get_device_name()}, {parameters:.0f}M parameters, bf16-mixed step "
        f"{step_time * 1e3:.1f} ms, peak {peak:.2f} GiB; cpu_offload step {offload_time * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
