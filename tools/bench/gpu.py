"""The training-step benchmark on a CUDA GPU: a GPT-2-small-sized model in bf16-mixed.

The model is a plain-torch GPT (``gpt_model``): 12 layers, width 768, 12 heads, vocabulary 50257,
context 1024, batch 8, output layer tied to the token embedding (124 M parameters). It runs through the
same workers and alternation as the CPU step benchmark (``step.measure``) with ``device="cuda"``; each
chunk ends with ``torch.cuda.synchronize()``. fabric_core reaches CUDA through the fabric-cuda plugin:
without it, its row says so.

Runs only where ``torch.cuda.is_available()``; elsewhere the section says "no GPU in this session" (the
test suite checks the model and the step on the CPU, in tests/test_bench_smoke.py).
Standalone on a GPU machine: ``python -m tools.bench --only gpu``, which adds this section to an
existing report in ``--out`` without touching the others.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from tools.bench.common import BenchError, Context, Target, run_snippet

GPT2_SMALL = {"batch": 8, "seq": 1024, "d": 768, "layers": 12, "heads": 12, "vocab": 50257}
TARGET = Target(on="ratio", op="<=", limit=1.03, text="<= 1.03x raw")
CHUNK_S = 1.0

_PROBE = """
import json, torch
ok = torch.cuda.is_available()
print("BENCH_RESULT " + json.dumps({"cuda": ok, "name": torch.cuda.get_device_name(0) if ok else None}))
"""


def gpt_model(vocab: int, seq: int, d: int, layers: int, heads: int) -> Any:
    """A GPT-2-style decoder in plain torch (pre-norm blocks, causal attention, tied output layer)."""
    import torch
    from torch import nn
    from torch.nn import functional

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = (z.view(b, t, heads, d // heads).transpose(1, 2) for z in self.qkv(self.norm1(x)).split(d, 2))
            attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(attended.transpose(1, 2).reshape(b, t, d))
            return x + self.out(functional.gelu(self.fc(self.norm2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens, self.positions = nn.Embedding(vocab, d), nn.Embedding(seq, d)
            self.blocks = nn.Sequential(*(Block() for _ in range(layers)))
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab, bias=False)
            self.head.weight = self.tokens.weight

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(idx.shape[1], device=idx.device)
            return self.head(self.norm(self.blocks(self.tokens(idx) + self.positions(positions))))

    return GPT()


def find_gpu() -> str | None:
    """The name of CUDA device 0, or None (a CPU build of torch is recognised without starting it)."""
    try:
        if "+cpu" in metadata.version("torch"):
            return None
        probe = run_snippet(_PROBE, timeout=300)
    except (metadata.PackageNotFoundError, BenchError):
        return None
    return probe["name"] if probe["cuda"] else None


def run(ctx: Context) -> list[dict]:
    from tools.bench.step import measure

    name = find_gpu()
    if name is None:
        return [{"id": "gpu", "title": "GPU training step", "skipped": "no GPU in this session", "rows": []}]
    spec = dict(GPT2_SMALL, title=f"GPT-2-small-sized model, batch 8 x 1024 tokens ({name})")
    if ctx.quick:
        spec.update(batch=1, seq=128, layers=2, title=f"2-layer GPT, 128 tokens ({name}), quick")
    return measure(
        ctx,
        precision="bf16-mixed",
        models={"gpt": spec},
        device="cuda",
        rounds=ctx.rounds_for(10, 1),
        warmup=(0 if ctx.quick else 2),
        chunk_s=0.05 if ctx.quick else CHUNK_S,
        id_prefix="gpu",
        title_prefix="GPU training step",
        target=TARGET,
    )
