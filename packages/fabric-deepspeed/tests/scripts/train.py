"""A small ZeRO stage-3 run on two CPU processes, start to exit: the shape of a user's script.

usage: python train.py [--die]     (--die: rank 1 is killed after its first step; the run must end non-zero)

Each rank prints "rank N trained ok" after its last step.
"""

from __future__ import annotations

import os
import signal
import sys

from _shared import ACCELERATOR, DEVICES, batches, make_model, make_optimizer, report, train

from fabric_core import Fabric


def main() -> None:
    # As a user's script: `python train.py`, Fabric starts the second process (nothing set beforehand).
    fabric = Fabric(accelerator=ACCELERATOR, devices=DEVICES, strategy="deepspeed_stage_3")
    fabric.launch()
    with fabric.init_module(empty_init=True):
        model = make_model()
    model, optimizer = fabric.setup(model, make_optimizer(model.parameters()))
    for step, batch in enumerate(batches(8)):
        train(fabric, model, optimizer, [batch])
        if "--die" in sys.argv and step == 0 and fabric.global_rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    report(f"rank {fabric.global_rank} trained ok")


if __name__ == "__main__":
    main()
