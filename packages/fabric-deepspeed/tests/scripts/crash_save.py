"""Crash a DeepSpeed save at one step of its commit; then, in one fresh launch, check what each crash left.

usage: python crash_save.py crash OUT STEP COMMIT   save step 1 to OUT/ckpt, then save step 2 and end the
                                                    process (os._exit(17)) right after STEP
       python crash_save.py resume OUT...           for each OUT: load OUT/ckpt, save step 3, list OUT,
                                                    load again with verify=True; then check that a
                                                    flipped byte fails verify=True, and that a save
                                                    error is raised, on every rank

COMMIT is "exchange" (the atomic swap of Linux) or "two-renames" (what other systems do). Both run in two
processes (stage 3: every rank writes its own model and optimizer partitions).

The model's parameters all equal the step that saved them, so a load shows which save it read, and that it
read all of it. resume prints, per OUT, "OUT: loaded step N", each checkpoint warning as "OUT: warning: ...",
or "OUT: load failed: TYPE: message"; then "OUT: entries: [...]" and "OUT: reloaded step 3" (rank 0); and
every rank "rank N verify refuses a flipped byte ok" and "rank N a save error is raised on every rank ok".
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

import torch
from _shared import full_parameters, launched_fabric, make_optimizer, report
from torch import nn

from fabric_core.io import commit, faults
from fabric_core.io.integrity import CheckpointCorruptError

STRATEGY = "deepspeed_stage_3"


def set_up(fabric, step: int):
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float(step))
    return fabric.setup(model, make_optimizer(model.parameters()))


def save(fabric, path: Path, step: int) -> None:
    model, optimizer = set_up(fabric, step)
    fabric.save(path, {"model": model, "optimizer": optimizer, "step": step})


def load_step(fabric, path: Path, verify: bool = False) -> int:
    model, optimizer = set_up(fabric, 0)
    state = {"model": model, "optimizer": optimizer, "step": 0}
    fabric.load(path, state, verify=verify)
    values = {float(v) for p in full_parameters(fabric, model).values() for v in p.flatten()}
    assert values == {float(state["step"])}, f"a mix of saves was loaded: step {state['step']}, values {values}"
    return state["step"]


def crash(out: Path, step_name: str, how: str) -> None:
    commit.USE_RENAME_EXCHANGE = how == "exchange"
    fabric = launched_fabric(strategy=STRATEGY)
    save(fabric, out / "ckpt", 1)
    faults.checkpoint_step = lambda name: os._exit(17) if name == step_name else None
    save(fabric, out / "ckpt", 2)
    report(f"rank {fabric.global_rank} the save of step 2 never reached {step_name}")


def resume_one(fabric, out: Path) -> None:
    rank_zero = fabric.global_rank == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loaded = f"loaded step {load_step(fabric, out / 'ckpt')}"
        except Exception as err:
            loaded = f"load failed: {type(err).__name__}: {err}"
    if rank_zero:
        report(f"{out}: {loaded}")
        for warning in caught:
            if "checkpoint" in str(warning.message).lower():
                report(f"{out}: warning ({Path(warning.filename).name}): {warning.message}")
    save(fabric, out / "ckpt", 3)
    if rank_zero:
        report(f"{out}: entries: {sorted(os.listdir(out))}")
    reloaded = load_step(fabric, out / "ckpt", verify=True)
    if rank_zero:
        report(f"{out}: reloaded step {reloaded}")


def flipped_byte_is_refused(fabric, out: Path) -> None:
    damaged = out / "damaged"
    if fabric.global_rank == 0:
        shutil.copytree(out / "ckpt", damaged)
        target = next((damaged / "checkpoint").glob("*rank_1*optim_states.pt"))
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    fabric.barrier()
    try:
        load_step(fabric, damaged, verify=True)
    except CheckpointCorruptError as err:
        problem = err.problems[0] if len(err.problems) == 1 else str(err.problems)
        refused = "rank_1" in problem and "CRC-32" in problem
        report(f"rank {fabric.global_rank} verify refuses a flipped byte {'ok' if refused else 'FAILED'}: {problem}")
    else:
        report(f"rank {fabric.global_rank} verify refuses a flipped byte FAILED: loaded")


def save_error_on_every_rank(fabric, out: Path) -> None:
    blocker = out / "a-file"
    if fabric.global_rank == 0:
        blocker.write_text("in the way")
    fabric.barrier()
    try:
        save(fabric, blocker / "ckpt", 4)
    except NotADirectoryError as err:
        explained = f"Cannot save checkpoint '{blocker / 'ckpt'}'" in str(err) and f"'{blocker}' is a file" in str(err)
        verdict = "ok" if explained else "FAILED"
        report(f"rank {fabric.global_rank} a save error is raised on every rank {verdict}: {err}")
    else:
        report(f"rank {fabric.global_rank} a save error is raised on every rank FAILED: saved")


def resume(outs: list[Path]) -> None:
    fabric = launched_fabric(strategy=STRATEGY)
    for out in outs:
        resume_one(fabric, out)
    flipped_byte_is_refused(fabric, outs[-1])
    save_error_on_every_rank(fabric, outs[-1])


if __name__ == "__main__":
    if sys.argv[1] == "crash":
        crash(Path(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        resume([Path(arg) for arg in sys.argv[2:]])
