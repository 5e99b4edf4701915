"""Crash a sharded save at one step of its commit, then check what a fresh run loads and cleans up.

usage: python crash_save.py OUT crash STEP DEVICES COMMIT   save step 1 to OUT/ckpt, then save step 2 and end
                                                            the process (os._exit(17)) right after STEP
       python crash_save.py OUT resume                      in a fresh run of one process: load OUT/ckpt,
                                                            save step 3

COMMIT is "exchange" (the atomic swap of Linux) or "two-renames" (what other systems do).

The model's parameters are all equal to the step that saved them, so a load shows which save it read,
and that it read all of it. resume prints "loaded step N", each warning as "warning: ...", or
"load failed: TYPE: message"; then "entries: [...]" (OUT's contents after saving step 3) and "reloaded step 3".
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch
from _shared import full, launched_fabric, report
from torch import nn

from fabric_core.io import commit, faults
from fabric_fsdp import FSDPStrategy


def make_model(step: int) -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float(step))
    return model


def save(fabric, out: Path, step: int) -> None:
    model = fabric.setup_module(make_model(step))
    fabric.save(out / "ckpt", {"model": model, "step": step})


def crash(out: Path, step_name: str, devices: int, how: str) -> None:
    commit.USE_RENAME_EXCHANGE = how == "exchange"
    fabric = launched_fabric(devices=devices, strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}))
    save(fabric, out, 1)
    faults.checkpoint_step = lambda name: os._exit(17) if name == step_name else None
    save(fabric, out, 2)
    report(f"rank {fabric.global_rank} the save of step 2 never reached {step_name}")


def load_step(fabric, out: Path) -> int:
    model = fabric.setup_module(make_model(0))
    state = {"model": model, "step": 0}
    fabric.load(out / "ckpt", state)
    values = {float(v) for p in model.parameters() for v in full(p).flatten()}
    assert values == {float(state["step"])}, f"a mix of saves was loaded: step {state['step']}, values {values}"
    return state["step"]


def resume(out: Path) -> None:
    fabric = launched_fabric(devices=1, strategy=FSDPStrategy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report(f"loaded step {load_step(fabric, out)}")
        except Exception as err:
            report(f"load failed: {type(err).__name__}: {err}")
    for warning in caught:
        if "checkpoint" in str(warning.message).lower():
            report(f"warning: {warning.message}")
    save(fabric, out, 3)
    report(f"entries: {sorted(os.listdir(out))}")
    report(f"reloaded step {load_step(fabric, out)}")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    if sys.argv[2] == "crash":
        crash(out, sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        resume(out)
