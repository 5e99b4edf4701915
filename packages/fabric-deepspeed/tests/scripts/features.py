"""DeepSpeed features in two processes: zero.Init, checkpoints for consolidation, full weights, bf16, several models.

usage: python features.py DIR    (two processes, started by Fabric)

Each check prints "rank N CHECK ok" on both ranks. DIR receives ``stage3`` (a checkpoint directory),
``stage3.expected.pt`` (its weights, gathered by rank 0) and ``stage3.full.pt`` (a full-weights file),
which the tests then consolidate and compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from _shared import batches, full_parameters, launched_fabric, make_model, make_optimizer, report, train
from torch import nn

from fabric_deepspeed import DeepSpeedStrategy


def check(fabric, name: str, condition: bool, detail: str = "") -> None:
    report(f"rank {fabric.global_rank} {name} {'ok' if condition else 'FAILED'}{': ' + detail if detail else ''}")


def expect_error(fabric, name: str, error: type, call, needle: str) -> None:
    try:
        call()
    except error as err:
        check(fabric, name, needle in str(err), str(err)[:200] if needle not in str(err) else "")
    else:
        check(fabric, name, False, "no error raised")


def zero_init_partitions(directory: Path) -> None:
    fabric = launched_fabric(strategy="deepspeed_stage_3")
    with fabric.init_module(empty_init=True):
        model = make_model()
    parameters = list(model.parameters())
    # Partitioned at creation: each rank holds its part (ds_tensor) and no rank the whole parameter.
    partitioned = all(hasattr(p, "ds_numel") and p.numel() == 0 for p in parameters)
    parts = all(p.ds_tensor.numel() < p.ds_numel for p in parameters if p.ds_numel > 1)
    check(fabric, "zero.Init partitions", partitioned and parts, f"{[(p.numel(), p.ds_numel) for p in parameters]}")

    model, optimizer = fabric.setup(model, make_optimizer(model.parameters()))
    train(fabric, model, optimizer, batches(2))
    fabric.save(directory / "stage3", {"model": model, "optimizer": optimizer, "step": 2, "note": "kept"})
    expected = full_parameters(fabric, model)
    if fabric.global_rank == 0:
        torch.save(expected, directory / "stage3.expected.pt")
        torch.save({"model": expected}, directory / "stage3.full.pt")
    fabric.barrier()
    check(fabric, "save after zero.Init", (directory / "stage3" / "latest").is_file())
    fabric.teardown()

    # A full-weights file into a partitioned model: each module gathered, loaded, partitioned again.
    fabric = launched_fabric(strategy=DeepSpeedStrategy(stage=3, load_full_weights=True))
    with fabric.init_module(empty_init=True):
        model = make_model()
    model, optimizer = fabric.setup(model, make_optimizer(model.parameters()))
    fabric.load(directory / "stage3.full.pt", {"model": model})
    loaded = full_parameters(fabric, model)
    same = all(torch.equal(loaded[k], expected[k]) for k in expected)
    check(fabric, "load_full_weights", same)
    expect_error(
        fabric,
        "full weights refuse the optimizer",
        ValueError,
        lambda: fabric.load(directory / "stage3.full.pt", {"model": model, "optimizer": optimizer}),
        "restores the model only",
    )
    fabric.teardown()


def bf16() -> None:
    fabric = launched_fabric(strategy="deepspeed_stage_2", precision="bf16-mixed")
    model = make_model()
    model, optimizer = fabric.setup(model, make_optimizer(model.parameters()))
    x, y = batches(1)[0]
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        output = model(x.to(fabric.device))
        loss = nn.functional.cross_entropy(output, y.to(fabric.device))
        fabric.backward(loss)
        optimizer.step()
        losses.append(loss.item())
    dtypes = {p.dtype for p in model.parameters()}
    detail = f"losses {losses}, parameter dtypes {dtypes}, output {output.dtype}"
    learned = losses[-1] < losses[0]
    check(fabric, "bf16-mixed", dtypes == {torch.bfloat16} and output.dtype == torch.float32 and learned, detail)
    fabric.teardown()


def several_models_and_errors() -> None:
    fabric = launched_fabric(strategy="deepspeed_stage_2")
    first, second = make_model(), make_model()
    first, first_optimizer = fabric.setup(first, make_optimizer(first.parameters()))
    second, second_optimizer = fabric.setup(second, make_optimizer(second.parameters()))
    x, y = batches(1)[0]
    x, y = x.to(fabric.device), y.to(fabric.device)
    for model, optimizer in ((first, first_optimizer), (second, second_optimizer)):
        optimizer.zero_grad()
        fabric.backward(nn.functional.cross_entropy(model(x), y), model=model)
        optimizer.step()
    check(fabric, "two models with backward(model=...)", True)
    loss = nn.functional.cross_entropy(first(x), y)
    expect_error(fabric, "backward without model=", ValueError, lambda: fabric.backward(loss), "model=model")
    expect_error(
        fabric,
        "clip_gradients",
        NotImplementedError,
        lambda: fabric.clip_gradients(first, first_optimizer, max_norm=1.0),
        "'gradient_clipping'",
    )
    expect_error(
        fabric,
        "no_backward_sync",
        RuntimeError,
        lambda: fabric.no_backward_sync(first).__enter__(),
        "gradient_accumulation_steps",
    )
    inference = fabric.setup_module(make_model())  # no optimizer: stages 1 and 2 have nothing to partition
    with torch.no_grad():
        check(fabric, "setup_module without an optimizer", inference(x).shape == (16, 2))
    third = make_model()
    expect_error(
        fabric,
        "setup_optimizers alone",
        RuntimeError,
        lambda: fabric.setup_optimizers(make_optimizer(third.parameters())),
        "fabric.setup(model, optimizer)",
    )
    fabric.teardown()


def main() -> None:
    directory = Path(sys.argv[1])
    zero_init_partitions(directory)
    bf16()
    several_models_and_errors()


if __name__ == "__main__":
    main()
