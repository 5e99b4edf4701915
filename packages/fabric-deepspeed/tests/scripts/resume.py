"""Save in one launch, load in a fresh one and continue: the weights must equal an uninterrupted run's.

usage: python resume.py save DIR     train 2 steps per configuration, save to DIR/<configuration>
       python resume.py load DIR     train 4 steps uninterrupted; load DIR/<configuration>, train 2 more; compare

The state holds the model, the optimizer, an LR scheduler and a plain value, so all four are restored.
Each rank prints "rank N resume CONFIGURATION ok: difference D" (load) or "rank N saved CONFIGURATION" (save).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from _shared import batches, full_parameters, launched_fabric, make_model, make_optimizer, report, train

CONFIGURATIONS = ("deepspeed_stage_2", "deepspeed_stage_3")


def set_up(strategy: str):
    fabric = launched_fabric(strategy=strategy)
    model = make_model()
    optimizer = make_optimizer(model.parameters())
    # On the torch optimizer, as users write it: DeepSpeed's ZeRO optimizer steps with its param_groups.
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model, optimizer = fabric.setup(model, optimizer)
    return fabric, model, optimizer, scheduler


def train_with_scheduler(fabric, model, optimizer, scheduler, steps) -> None:
    for batch in steps:
        train(fabric, model, optimizer, [batch])
        scheduler.step()


def main() -> None:
    action, directory = sys.argv[1], Path(sys.argv[2])
    for strategy in CONFIGURATIONS:
        if action == "save":
            fabric, model, optimizer, scheduler = set_up(strategy)
            train_with_scheduler(fabric, model, optimizer, scheduler, batches(2))
            state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "step": 2}
            fabric.save(directory / strategy, state)
            report(f"rank {fabric.global_rank} saved {strategy}")
            fabric.teardown()
            continue
        fabric, model, optimizer, scheduler = set_up(strategy)
        train_with_scheduler(fabric, model, optimizer, scheduler, batches(4))
        reference = full_parameters(fabric, model)
        fabric.teardown()

        fabric, model, optimizer, scheduler = set_up(strategy)
        state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "step": 0}
        remainder = fabric.load(directory / strategy, state)
        assert state["step"] == 2, state["step"]
        assert remainder == {}, sorted(remainder)
        assert scheduler.last_epoch == 2, scheduler.last_epoch
        train_with_scheduler(fabric, model, optimizer, scheduler, batches(2, offset=2))
        resumed = full_parameters(fabric, model)
        difference = max((resumed[k] - reference[k]).abs().max().item() for k in reference)
        verdict = "ok" if difference == 0.0 else "FAILED"
        report(f"rank {fabric.global_rank} resume {strategy} {verdict}: difference {difference:.2e}")
        fabric.teardown()


if __name__ == "__main__":
    main()
