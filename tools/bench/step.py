"""Training-step overhead: the same model, data, SGD and loss in raw PyTorch and in each framework.

Driver side (``run``): one persistent worker per candidate and precision; per model, a probe of raw
PyTorch sizes the chunks (about ``CHUNK_S`` of raw steps, short so that many rounds fit), then warm-up
rounds, then measured rounds in which each worker in turn runs one chunk. Worker side (``make_task``):
builds every model of the config with a fixed seed, its batch already on the device, and the
candidate's training step around it. Threads: ``--threads`` (default 1) in every worker.

The step is ``zero_grad(); out = model(x); loss = cross_entropy(out, y); backward; opt.step()``, with
``loss.backward()`` in raw PyTorch, ``fabric.backward(loss)`` / ``accelerator.backward(loss)`` in the
frameworks. In bf16-mixed raw PyTorch runs the forward under ``torch.autocast(dtype=torch.bfloat16)``
and casts the output to float32, which is what the three frameworks do.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from tools.bench.common import (
    BenchError,
    Context,
    Target,
    alternate,
    best_of_groups,
    clean_env,
    close_all,
    start_workers,
    table,
)

PRECISIONS = ("32-true", "bf16-mixed")
MODELS = {
    "mlp": {"batch": 32, "title": "tiny MLP (64-128-128-10, batch 32)"},
    "cnn": {"batch": 32, "title": "small CNN (2 conv + pool + linear, 3x32x32 images, batch 32)"},
}
CHUNK_S = 0.1  # raw PyTorch time of one measured chunk (quick: QUICK_CHUNK_S); at least MIN_STEPS steps
QUICK_CHUNK_S = 0.01
REPLICAS = 20  # copies of each model per worker (model, batch, optimizer); pass i of the run uses copy i % REPLICAS
PARTS = 10  # a round is this many passes over the candidates, each running a part of the chunk; the best part counts
PROBE_STEPS = 50
MIN_STEPS = 2
TARGET = Target(on="ratio", op="<=", limit=1.03, text="<= 1.03x raw")
START_TIMEOUT_S = 300
CHUNK_TIMEOUT_S = 120


# -- worker side -----------------------------------------------------------------------------------


def build(name: str, spec: dict, device: Any) -> tuple[Any, Any, Any]:
    """The model, a fixed input batch and fixed targets, on ``device`` (same seed in every candidate)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    batch = spec["batch"]
    if name == "mlp":
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
        x, y = torch.randn(batch, 64), torch.randint(0, 10, (batch,))
    elif name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, 10),
        )
        x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    elif name == "gpt":
        from tools.bench.gpu import gpt_model

        model = gpt_model(spec["vocab"], spec["seq"], spec["d"], spec["layers"], spec["heads"])
        x = torch.randint(0, spec["vocab"], (batch, spec["seq"]))
        y = torch.randint(0, spec["vocab"], (batch, spec["seq"]))
    else:
        raise ValueError(f"unknown model {name!r}")
    return model, x.to(device), y.to(device)


def training_step(candidate: str, precision: str, device: Any, model: Any, x: Any, y: Any) -> Callable[[], None]:
    """Set the model up the candidate's way; return one training step on the fixed batch."""
    import torch
    from torch.nn.functional import cross_entropy

    def loss_of(out: Any) -> Any:
        return cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    optimizer_args = {"lr": 0.01, "momentum": 0.9}
    if candidate == "raw":
        model.to(device)
        optimizer = torch.optim.SGD(model.parameters(), **optimizer_args)
        mixed = precision == "bf16-mixed"

        def step() -> None:
            optimizer.zero_grad()
            if mixed:
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    out = model(x)
                out = out.float()
            else:
                out = model(x)
            loss_of(out).backward()
            optimizer.step()

        return step

    optimizer = torch.optim.SGD(model.parameters(), **optimizer_args)
    if candidate in ("fabric_core", "lightning"):
        if candidate == "fabric_core":
            from fabric_core import Fabric
        else:
            from lightning.fabric import Fabric
        runner = Fabric(accelerator=device.type, devices=1, precision=precision)
        model, optimizer = runner.setup(model, optimizer)
    elif candidate == "accelerate":
        from accelerate import Accelerator

        runner = Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if precision == "bf16-mixed" else "no")
        model, optimizer = runner.prepare(model, optimizer)
    else:
        raise ValueError(f"unknown candidate {candidate!r}")
    backward = runner.backward

    def step() -> None:
        optimizer.zero_grad()
        backward(loss_of(model(x)))
        optimizer.step()

    return step


def make_task(candidate: str, config: dict) -> Callable[[dict], dict]:
    import torch

    torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    steps = {}
    for name, spec in config["models"].items():
        # Several copies: where one copy's tensors land in memory can make its steps a few percent
        # faster or slower than another's; the driver moves to the next copy with every pass.
        steps[name] = [
            training_step(candidate, config["precision"], device, *build(name, spec, device))
            for _ in range(config.get("replicas", 1))
        ]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gc.collect()
    gc.freeze()  # what exists now is never collected again: the gc.collect() before each chunk stays cheap

    def chunk(message: dict) -> dict:
        replicas, n = steps[message["model"]], message["steps"]
        step = replicas[message.get("replica", 0) % len(replicas)]
        gc.collect()
        sync()
        start = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        return {"seconds": time.perf_counter() - start}

    return chunk


# -- driver side -----------------------------------------------------------------------------------


def measure(
    ctx: Context,
    *,
    precision: str,
    models: dict,
    device: str,
    rounds: int,
    warmup: int,
    chunk_s: float,
    id_prefix: str,
    title_prefix: str,
    target: Target | None,
    replicas: int = 1,
) -> list[dict]:
    """Alternate chunks of training steps between the candidates' workers; one table per model."""
    config = {"precision": precision, "device": device, "threads": ctx.threads, "models": models, "replicas": replicas}
    started: dict[str, str] = {}
    ctx.log(f"{id_prefix} {precision}: starting workers for {', '.join(ctx.candidates)}")
    workers = start_workers("step", ctx.candidates, config, clean_env(ctx.threads), START_TIMEOUT_S, started)
    tables = []
    try:
        for model, spec in models.items():
            errors = dict(started)
            steps = PROBE_STEPS if not ctx.quick else 5
            if "raw" in workers:
                try:
                    for _ in range(2):  # the first probe warms up, the second sizes the chunks
                        probe = workers["raw"].ask({"cmd": "chunk", "model": model, "steps": steps}, CHUNK_TIMEOUT_S)
                    steps = max(MIN_STEPS, round(chunk_s / (probe["seconds"] / steps)))
                except BenchError as err:
                    errors["raw"] = str(err)
            # A round runs the chunk as `parts` passes over the candidates (rotated order), each candidate
            # running one part per pass, so that a slow spell of the machine lands on all of them alike.
            parts = min(PARTS, steps)
            part_steps = -(-steps // parts)

            def once(name: str, index: int, model: str = model, part_steps: int = part_steps) -> float:
                # Each pass runs on the next copy of the model, so a round's best pass and the median over the
                # rounds do not hang on where one copy's tensors happened to land in memory.
                message = {"cmd": "chunk", "model": model, "steps": part_steps, "replica": index}
                return workers[name].ask(message, CHUNK_TIMEOUT_S)["seconds"] / part_steps * 1e6

            ctx.log(
                f"{id_prefix} {precision} {model}: {warmup} warm-up + {rounds} rounds of {parts} x {part_steps} steps"
            )
            by_part = alternate(list(workers), rounds * parts, warmup * parts, once, errors, pass_index=True)
            samples = {name: best_of_groups(values, parts) for name, values in by_part.items()}
            tables.append(
                table(
                    ctx,
                    id=f"{id_prefix}-{model}-{precision}",
                    title=f"{title_prefix}: {spec['title']}, {precision}",
                    unit="us/step",
                    samples=samples,
                    errors=errors,
                    ratio="cand/raw",
                    target=target,
                    about=(
                        f"Time per training step: a round is {parts} passes over the candidates, each running "
                        f"{part_steps} steps per pass, and a candidate's fastest pass counts (interruptions only "
                        f"ever add time); each worker holds {replicas} copies of the model and each pass runs on the "
                        "next one; median, min and max over the rounds; ratio = candidate / raw PyTorch of the same "
                        "round."
                    ),
                    params={
                        "precision": precision,
                        "device": device,
                        "rounds": rounds,
                        "warmup_rounds": warmup,
                        "passes_per_round": parts,
                        "model_copies": replicas,
                        "steps_per_pass": part_steps,
                        "threads": ctx.threads,
                        "model": model,
                        **spec,
                    },
                )
            )
    finally:
        close_all(workers.values())
    return tables


def run(ctx: Context) -> list[dict]:
    rounds, warmup = ctx.rounds_for(60, 2), (0 if ctx.quick else 2)
    tables = []
    for precision in PRECISIONS:
        tables += measure(
            ctx,
            precision=precision,
            models=MODELS,
            device="cpu",
            rounds=rounds,
            warmup=warmup,
            chunk_s=QUICK_CHUNK_S if ctx.quick else CHUNK_S,
            id_prefix="step",
            title_prefix="Training step",
            target=TARGET,
            replicas=1 if ctx.quick else REPLICAS,
        )
    return tables
