"""Save a sharded checkpoint from two CPU (gloo) processes again and again, until killed: ``sharded_kill``.

usage: python sharded_loop.py DIR LAYERS LOAD LOOP

Fabric(accelerator="cpu", devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear})).launch(); the
model is LAYERS Linear(1024, 1024) layers (4 MB each), every parameter equal to the step that saved it.
Each rank first prints "pid RANK PID". With LOAD=1, both ranks load DIR/ckpt in place and rank 0 prints
"loaded STEP whole|mixed" (or "load failed: TYPE: message") and "warning: ..." for each checkpoint warning.
Then the next step is saved once and rank 0 prints "entries: [...]" (DIR's contents). With LOOP=1, the
ranks go on saving step after step, rank 0 printing "saving STEP" and "saved STEP", until killed.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from fabric_core import Fabric
from fabric_fsdp import FSDPStrategy

NAME = "ckpt"
WIDTH = 1024


def report(line: str) -> None:
    print(line + "\n", end="", flush=True)


def fill(model: nn.Module, step: int) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float(step))


def values(model: nn.Module) -> set[float]:
    """Every distinct value of the model's parameters, whole (a collective: every rank calls it)."""
    found: set[float] = set()
    for parameter in model.parameters():
        tensor = parameter.full_tensor() if isinstance(parameter, DTensor) else parameter
        found.update(torch.unique(tensor.detach()).tolist())
    return found


def load(fabric: Fabric, model: nn.Module, path: Path) -> int:
    state = {"model": model, "step": 0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fabric.load(path, state)
        except Exception as err:  # reported, not raised: a failed load is one of the outcomes measured
            if fabric.global_rank == 0:
                report(f"load failed: {type(err).__name__}: {err}".replace("\n", " "))
            return 0
    found = values(model)
    if fabric.global_rank == 0:
        for warning in caught:
            if "checkpoint" in str(warning.message).lower():
                report(f"warning: {warning.message}".replace("\n", " "))
        report(f"loaded {state['step']} {'whole' if found == {float(state['step'])} else 'mixed'}")
    return state["step"]


def main(folder: Path, layers: int, do_load: bool, loop: bool) -> None:
    fabric = Fabric(accelerator="cpu", devices=2, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}))
    fabric.launch()
    report(f"pid {fabric.global_rank} {os.getpid()}")
    model = fabric.setup_module(nn.Sequential(*(nn.Linear(WIDTH, WIDTH, bias=False) for _ in range(layers))))
    path = folder / NAME
    step = load(fabric, model, path) if do_load else 0
    step += 1
    fill(model, step)
    fabric.save(path, {"model": model, "step": step})
    if fabric.global_rank == 0:
        report(f"entries: {sorted(os.listdir(folder))}")
    while loop:
        step += 1
        fill(model, step)
        if fabric.global_rank == 0:
            report(f"saving {step}")
        fabric.save(path, {"model": model, "step": step})
        if fabric.global_rank == 0:
            report(f"saved {step}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1")
