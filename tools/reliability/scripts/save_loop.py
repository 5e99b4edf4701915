"""Save a ~SIZE MB state to one path again and again in one CPU process, until killed: the ``kill`` measurement.

usage: python save_loop.py DIR SIZE_MB LOAD LOOP

With LOAD=1, first ``fabric.load(DIR/ckpt.pt)`` (what a killed run left) and print
"loaded STEP whole|mixed" or "load failed: TYPE: message". Then save the next step once, wait for its
background flush, and print "entries: [...]" (DIR's contents: a clean directory holds only ckpt.pt).
With LOOP=1, go on saving step after step, printing "saving STEP" before and "saved STEP" after each
save, until the process is killed. Each state is {"step": STEP, "data": a float32 tensor filled with STEP}.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from fabric_core import Fabric
from fabric_core.io import wait_for_checkpoint_flushes

NAME = "ckpt.pt"


def report(line: str) -> None:
    print(line + "\n", end="", flush=True)


def state(step: int, numel: int) -> dict:
    return {"step": step, "data": torch.full((numel,), float(step))}


def load(fabric: Fabric, path: Path, numel: int) -> int:
    """The step of the checkpoint at ``path`` (0 when it cannot be read), after printing what was found."""
    try:
        checkpoint = fabric.load(path)
    except Exception as err:  # reported, not raised: a failed load is one of the outcomes measured
        report(f"load failed: {type(err).__name__}: {err}".replace("\n", " "))
        return 0
    step, data = checkpoint["step"], checkpoint["data"]
    whole = data.numel() == numel and bool((data == float(step)).all())
    report(f"loaded {step} {'whole' if whole else 'mixed'}")
    return step


def main(folder: Path, size_mb: float, do_load: bool, loop: bool) -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    path = folder / NAME
    numel = int(size_mb * 2**20) // 4
    step = load(fabric, path, numel) if do_load else 0
    step += 1
    fabric.save(path, state(step, numel))
    wait_for_checkpoint_flushes()
    report(f"entries: {sorted(os.listdir(folder))}")
    while loop:
        step += 1
        report(f"saving {step}")
        fabric.save(path, state(step, numel))
        report(f"saved {step}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1")
