"""Train the same model with DDP and with each DeepSpeed configuration, in the same two processes.

usage: python parity.py [CONFIGURATION ...]     (default: all; two processes, started by Fabric)

After several AdamW steps every parameter must equal DDP's within 1e-4. Each rank prints
"rank N CONFIGURATION ok: worst parameter difference D" per configuration.
"""

from __future__ import annotations

import sys

from _shared import (
    batches,
    full_parameters,
    launched_fabric,
    make_model,
    make_optimizer,
    report,
    train,
    worst_difference,
)

TOLERANCE = 1e-4

CONFIGURATIONS = {
    "stage 1": "deepspeed_stage_1",
    "stage 2": "deepspeed_stage_2",
    "stage 3": "deepspeed_stage_3",
    "stage 2 offload": "deepspeed_stage_2_offload",
}


def run(strategy: str):
    fabric = launched_fabric(strategy=strategy)
    model = make_model()
    model, optimizer = fabric.setup(model, make_optimizer(model.parameters()))
    train(fabric, model, optimizer, batches())
    parameters = full_parameters(fabric, model)
    fabric.teardown()
    return fabric, parameters


def main() -> None:
    chosen = sys.argv[1:] or list(CONFIGURATIONS)
    fabric, reference = run("ddp")
    for name in chosen:
        fabric, parameters = run(CONFIGURATIONS[name])
        difference = worst_difference(parameters, reference)
        if difference <= TOLERANCE:
            report(f"rank {fabric.global_rank} {name} ok: worst parameter difference {difference:.2e}")
        else:
            report(f"rank {fabric.global_rank} {name} FAILED: worst parameter difference {difference:.2e}")


if __name__ == "__main__":
    main()
