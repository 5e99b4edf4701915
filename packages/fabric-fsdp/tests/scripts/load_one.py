"""Load, in one process, the checkpoints features.py wrote with two (resharding from 2 shards to 1).

usage: python load_one.py OUT_DIR       (OUT_DIR holds sharded/ and full.pt from features.py)

The restored model and optimizer must equal the full checkpoint exactly. Prints "loaded PATH ok".
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from _shared import assert_same, launched_fabric, report
from features import make_model

from fabric_fsdp import FSDPStrategy
from fabric_fsdp.checkpoint import model_state, optimizer_state


def main(out: Path) -> None:
    expected = torch.load(out / "full.pt", weights_only=False)
    fabric = launched_fabric(devices=1, strategy=FSDPStrategy())
    assert fabric.world_size == 1
    for path in (out / "sharded", out / "full.pt"):
        model = make_model(seed=7)
        model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=0.5))
        state = {"model": model, "optimizer": optimizer, "step": 0}
        remainder = fabric.load(path, state)
        assert remainder == {"note": "kept in meta.pt"} and state["step"] == 3, (remainder, state["step"])
        assert_same(model_state(model.module, full=True), expected["model"], f"{path.name}: model")
        optimizer_full = optimizer_state(model.module, optimizer.optimizer, full=True)
        assert_same(optimizer_full, expected["optimizer"], f"{path.name}: optimizer")
        report(f"loaded {path.name} ok")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
